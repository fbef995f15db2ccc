/**
 * The core ↔ sandbox channel: one SharedArrayBuffer holding a request (a batch of calls) and its
 * reply, so that a batch costs one wake-up each way and no structured clone.
 *
 * Layout (all offsets in bytes):
 *
 * | offset          | type          | what                                                       |
 * | --------------- | ------------- | ---------------------------------------------------------- |
 * | 0               | Int32 × 16    | header: sequence numbers, counts, status (`H_*` indices)   |
 * | 64              | Float64 × N×7 | request ops: `[opcode, a, b, c, d, e, f]` per call         |
 * | after ops       | Float64 × R   | reply numbers (the answer of the batch's last call)        |
 * | after reply     | Uint8 × B     | request side channel: UTF-8 JSON (VcpuInfo, params)        |
 * | after that      | Uint8 × B     | reply side channel: UTF-8 JSON `{ fault?, events? }`       |
 *
 * Protocol: the core writes ops, then stores `H_REQ = seq + 1` and notifies; the worker runs the
 * ops in order, writes the reply, stores `H_REP = H_REQ` and notifies. Only the last op of a batch
 * may need an answer. Numbers are plain float64 (vCPU ids, slots, ns), JSON only for rare,
 * structured things.
 *
 * The same code runs in the sandbox Worker, a realm the plugin shares, so it calls only the
 * references `intrinsics.ts` took before the plugin was imported. The core reads a reply as
 * hostile input (`reply_reader.ts`): whoever holds this buffer can write any byte of it at any
 * time.
 *
 * @module
 */
import {
  Float64ArrayCtor,
  Int32ArrayCtor,
  isInteger,
  jsonParse,
  jsonStringify,
  u8Length,
  u8Set,
  u8Slice,
  Uint8ArrayCtor,
  utf8Decode,
  utf8Encode,
} from "./intrinsics.ts";

/** Header index: request sequence number (written by the core). */
export const H_REQ = 0;
/** Header index: reply sequence number (written by the worker; equals `H_REQ` when answered). */
export const H_REP = 1;
/** Header index: ops in the request. */
export const H_NOPS = 2;
/** Header index: bytes used in the request side channel. */
export const H_REQ_BYTES = 3;
/** Header index: reply status (`ST_OK` or `ST_FAULT`). */
export const H_STATUS = 4;
/** Header index: reply side channel length in bytes (0: no JSON). */
export const H_REP_BYTES = 5;
/** Header index: the worker's spin budget before it sleeps, in ns (written by the core). */
export const H_SPIN_NS = 6;

/** Reply status: every op ran. */
export const ST_OK = 0;
/** Reply status: an op failed; the reply JSON has `fault`. */
export const ST_FAULT = 1;

/** Opcodes. Void hooks first; ops that need an answer have `op >= OP_ANSWERED`. */
export const OP_ADD = 1;
/** `removeVcpu(a)`. */
export const OP_REMOVE = 2;
/** `onHalt(a, b, c, d)`. */
export const OP_HALT = 3;
/** `onDeschedule(a, b, c, REASONS[d], e, f)`. */
export const OP_DESCHED = 4;
/** `setParams(json.target, json.params)`. */
export const OP_PARAMS = 5;
/** First opcode that needs an answer. */
export const OP_ANSWERED = 16;
/** `init(ctx)` (ctx JSON), answer: `[tickNs, hasExtendSlice, hasQueueNext, ratelimit]`. */
export const OP_INIT = 16;
/** `pickNext(a, b)`, answer: `[0]` (null) or `[1, vcpu, sliceNs]` (`[2, ...]`: reserved). */
export const OP_PICK = 17;
/** `onWake(a, b)`, answer: `[slot]` (`-1`: none). */
export const OP_WAKE = 18;
/** `onTick(a)`, answer: `[n, slot...]`. */
export const OP_TICK = 19;
/** Flush only: no call, answer `[]`. */
export const OP_SYNC = 20;
/** Leave the serving loop and close the worker. */
export const OP_QUIT = 21;
/** `extendSlice(a, b, c, d, e)`, answer: `[0]` (null) or `[1, sliceNs]`. */
export const OP_EXTEND = 22;

/** `queueNext(a, b, c)`, answer: as `pickNext`'s. */
export const OP_QUEUE = 23;

/** `onDeschedule` reasons by code. */
export const REASONS = ["slice", "preempt", "yield", "revoked"] as const;

/** Doubles per op. */
export const OP_STRIDE = 7;
/** Ops per batch; a fuller queue is flushed early. */
export const OPS_CAP = 4096;
/** Reply numbers (an `onTick` answer lists at most this many slots, minus one). */
export const REPLY_CAP = 4096;
/** Events per reply beyond which the sandbox drops reports (it then adds one `dropped` event). */
export const EVENTS_CAP = 10_000;
/** Bytes of each JSON side channel. */
export const BYTES_CAP = 1 << 20;

const HEADER_BYTES = 64;
const OPS_OFF = HEADER_BYTES;
const REPLY_OFF = OPS_OFF + OPS_CAP * OP_STRIDE * 8;
const REQ_BYTES_OFF = REPLY_OFF + REPLY_CAP * 8;
const REP_BYTES_OFF = REQ_BYTES_OFF + BYTES_CAP;
const TOTAL = REP_BYTES_OFF + BYTES_CAP;

/** Header words (`Int32`). */
export const HEADER_WORDS = HEADER_BYTES / 4;

/**
 * Tests only: with `SandboxOptions.debugChannel`, the sandbox hands the plugin its channel's
 * buffer as `globalThis[Symbol.for(DEBUG_CHANNEL_KEY)]`, before importing it, so that a test can
 * check what the core does when a plugin writes into the channel, which the frozen realm
 * otherwise prevents.
 */
export const DEBUG_CHANNEL_KEY = "deno-vmm.sandbox.debug-channel";

/** Typed views over one channel buffer. */
export interface ChannelViews {
  /**
   * The buffer: shared for a Worker (send it with `postMessage`), private to each side for a
   * child process, where the batch and its reply travel as frames (`pipe_frame.ts`).
   */
  sab: SharedArrayBuffer | ArrayBuffer;
  /** Header words. */
  hdr: Int32Array;
  /** Request ops. */
  ops: Float64Array;
  /** Reply numbers. */
  reply: Float64Array;
  /** Request JSON bytes. */
  reqBytes: Uint8Array;
  /** Reply JSON bytes. */
  repBytes: Uint8Array;
}

/** Allocates a channel buffer. */
export function createChannel(): ChannelViews {
  return channelViews(new SharedArrayBuffer(TOTAL));
}

/** Allocates a channel in this thread's own memory (each side of a pipe keeps one). */
export function createLocalChannel(): ChannelViews {
  return channelViews(new ArrayBuffer(TOTAL));
}

/** Views over an existing channel buffer (in the worker). */
export function channelViews(sab: SharedArrayBuffer | ArrayBuffer): ChannelViews {
  return {
    sab,
    hdr: new Int32ArrayCtor(sab, 0, HEADER_WORDS),
    ops: new Float64ArrayCtor(sab, OPS_OFF, OPS_CAP * OP_STRIDE),
    reply: new Float64ArrayCtor(sab, REPLY_OFF, REPLY_CAP),
    reqBytes: new Uint8ArrayCtor(sab, REQ_BYTES_OFF, BYTES_CAP),
    repBytes: new Uint8ArrayCtor(sab, REP_BYTES_OFF, BYTES_CAP),
  };
}

/**
 * Writes `value` as JSON into `bytes` at `offset`; returns its length, or `-1` if it does not fit.
 * (TextEncoder cannot write into shared memory, hence the copy; this path is rare.)
 */
export function writeJson(bytes: Uint8Array, offset: number, value: unknown): number {
  const data = utf8Encode(jsonStringify(value) ?? "null");
  const length = u8Length(data);
  if (!(offset >= 0) || offset + length > u8Length(bytes)) return -1;
  u8Set(bytes, data, offset);
  return length;
}

/**
 * Reads JSON written by {@linkcode writeJson}: copies the bytes out of shared memory first, so
 * that what is parsed cannot change under the parser. Throws a `RangeError` for a span outside
 * `bytes` and a `SyntaxError` for what is not JSON.
 */
export function readJson(bytes: Uint8Array, offset: number, length: number): unknown {
  if (
    !isInteger(offset) || !isInteger(length) || offset < 0 || length < 0 ||
    offset + length > u8Length(bytes)
  ) {
    throw new RangeError(`JSON span ${offset}+${length} outside 0..${u8Length(bytes)}`);
  }
  return jsonParse(utf8Decode(u8Slice(bytes, offset, offset + length)));
}

/** The reply side channel's content. */
export interface ReplyJson {
  /** Why the batch failed. */
  fault?: {
    reason: "throw" | "invalid";
    hook: string;
    message: string;
  };
  /** Policy events reported during the batch. */
  events?: { kind: string; vcpu?: number; value?: number; detail?: string }[];
}
