/**
 * The frames a batch and its reply travel in between the core and a process sandbox
 * (`sandbox_process.ts`, `sandbox_child.ts`), over the child's stdin and stdout. Each side keeps
 * its own copy of the channel (`channel.ts`, `createLocalChannel`); a frame carries only the
 * part of it that changed, and the receiver copies it into its copy. The core then reads the
 * reply with the same hostile reader as the Worker's (`reply_reader.ts`).
 *
 * Request (core → child), little-endian:
 *
 * | offset | type             | what                                   |
 * | ------ | ---------------- | -------------------------------------- |
 * | 0      | Int32 × 4        | frame bytes, sequence, ops, JSON bytes |
 * | 16     | Float64 × ops×7  | the ops (`OP_STRIDE` numbers each)     |
 * | after  | Uint8 × bytes    | the request side channel's JSON        |
 *
 * Reply (child → core): `Int32 × 6` (frame bytes, sequence, status, reply numbers, JSON bytes, 0),
 * then `Float64 ×` reply numbers, then the reply side channel's JSON. The child's first frame,
 * before any request, is a reply with sequence 0 saying whether the plugin loaded
 * ({@linkcode HelloJson}).
 *
 * The core trusts nothing in a reply frame ({@linkcode decodeReplyHeader}): every length is
 * checked against the frame's bounds before it is used, and a frame that does not add up is a
 * corrupted channel. The child's side runs in the plugin's realm and uses only the references
 * `intrinsics.ts` took before the plugin was imported.
 *
 * @module
 */
import {
  BYTES_CAP,
  type ChannelViews,
  H_NOPS,
  H_REP_BYTES,
  H_REQ_BYTES,
  H_STATUS,
  OP_STRIDE,
  OPS_CAP,
  REPLY_CAP,
} from "./channel.ts";
import { Float64ArrayCtor, Int32ArrayCtor, u8Set, Uint8ArrayCtor } from "./intrinsics.ts";

/** Request header bytes. */
export const REQ_HEADER = 16;
/** Reply header bytes. */
export const REP_HEADER = 24;
/** Largest request frame. */
export const REQ_FRAME_CAP: number = REQ_HEADER + OPS_CAP * OP_STRIDE * 8 + BYTES_CAP;
/** Largest reply frame. */
export const REP_FRAME_CAP: number = REP_HEADER + REPLY_CAP * 8 + BYTES_CAP;

/** The child's first frame's JSON: the plugin's name, or why it did not load. */
export interface HelloJson {
  /** The plugin's `name` ("" when it has none). */
  name?: string;
  /** Why the plugin could not be loaded. */
  error?: string;
}

/** A frame buffer with its typed views. */
export interface FrameBuffer {
  /** The bytes. */
  bytes: Uint8Array;
  /** The header words. */
  words: Int32Array;
  /** The numbers after the header. */
  numbers: Float64Array;
}

function frameBuffer(cap: number, header: number): FrameBuffer {
  const buf = new Uint8ArrayCtor(cap).buffer;
  return {
    bytes: new Uint8ArrayCtor(buf, 0, cap),
    words: new Int32ArrayCtor(buf, 0, header / 4),
    numbers: new Float64ArrayCtor(buf, header, (cap - header - BYTES_CAP) / 8),
  };
}

/** A buffer for request frames. */
export function requestBuffer(): FrameBuffer {
  return frameBuffer(REQ_FRAME_CAP, REQ_HEADER);
}

/** A buffer for reply frames. */
export function replyBuffer(): FrameBuffer {
  return frameBuffer(REP_FRAME_CAP, REP_HEADER);
}

/**
 * The core's side: writes the request `seq` (its `nops` ops and `bytes` JSON bytes, queued in
 * `ch`) into `f`; returns the frame's length.
 */
export function encodeRequest(
  f: FrameBuffer,
  ch: ChannelViews,
  seq: number,
  nops: number,
  bytes: number,
): number {
  const n = nops * OP_STRIDE;
  const len = REQ_HEADER + n * 8 + bytes;
  f.words[0] = len;
  f.words[1] = seq;
  f.words[2] = nops;
  f.words[3] = bytes;
  const ops = ch.ops, out = f.numbers;
  for (let i = 0; i < n; i++) out[i] = ops[i];
  if (bytes > 0) {
    u8Set(
      f.bytes,
      new Uint8ArrayCtor(ch.reqBytes.buffer, ch.reqBytes.byteOffset, bytes),
      REQ_HEADER + n * 8,
    );
  }
  return len;
}

/**
 * The child's side: the request header's frame length and sequence number, or null when the
 * header does not describe a request (the core wrote it; this only guards the child).
 */
export function requestLength(f: FrameBuffer): number | null {
  const len = f.words[0], nops = f.words[2], bytes = f.words[3];
  if (nops < 0 || nops > OPS_CAP || bytes < 0 || bytes > BYTES_CAP) return null;
  if (len !== REQ_HEADER + nops * OP_STRIDE * 8 + bytes) return null;
  return len;
}

/** The child's side: copies the request in `f` (complete) into its channel `ch`. */
export function decodeRequest(f: FrameBuffer, ch: ChannelViews): void {
  const nops = f.words[2], bytes = f.words[3];
  const n = nops * OP_STRIDE;
  const ops = ch.ops, src = f.numbers;
  for (let i = 0; i < n; i++) ops[i] = src[i];
  if (bytes > 0) {
    u8Set(ch.reqBytes, new Uint8ArrayCtor(f.bytes.buffer, REQ_HEADER + n * 8, bytes), 0);
  }
  ch.hdr[H_NOPS] = nops;
  ch.hdr[H_REQ_BYTES] = bytes;
}

/**
 * The child's side: writes the reply to `seq` (its status, `words` reply numbers and side
 * channel, from `ch`) into `f`; returns the frame's length.
 */
export function encodeReply(
  f: FrameBuffer,
  ch: ChannelViews,
  seq: number,
  words: number,
): number {
  const bytes = ch.hdr[H_REP_BYTES];
  const len = REP_HEADER + words * 8 + bytes;
  f.words[0] = len;
  f.words[1] = seq;
  f.words[2] = ch.hdr[H_STATUS];
  f.words[3] = words;
  f.words[4] = bytes;
  f.words[5] = 0;
  const out = f.numbers, reply = ch.reply;
  for (let i = 0; i < words; i++) out[i] = reply[i];
  if (bytes > 0) {
    u8Set(
      f.bytes,
      new Uint8ArrayCtor(ch.repBytes.buffer, ch.repBytes.byteOffset, bytes),
      REP_HEADER + words * 8,
    );
  }
  return len;
}

/** A reply frame's header, as the core checked it. */
export interface ReplyHeader {
  /** Frame bytes. */
  length: number;
  /** Sequence number. */
  seq: number;
  /** Status word (checked by the reply reader). */
  status: number;
  /** Reply numbers. */
  words: number;
  /** Reply JSON bytes. */
  bytes: number;
}

/**
 * The core's side: reads the first {@linkcode REP_HEADER} bytes of a reply frame in `f`,
 * trusting none of it: a string saying what is impossible about it (a length out of bounds or
 * that does not add up), else the header.
 */
export function decodeReplyHeader(f: FrameBuffer): ReplyHeader | string {
  const w = f.words;
  const length = w[0], seq = w[1], status = w[2], words = w[3], bytes = w[4], pad = w[5];
  if (words < 0 || words > REPLY_CAP) return `reply frame with ${words} numbers`;
  if (bytes < 0 || bytes > BYTES_CAP) return `reply frame with ${bytes} JSON bytes`;
  if (pad !== 0) return `reply frame header word 5 is ${pad}`;
  if (length !== REP_HEADER + words * 8 + bytes) {
    return `reply frame length ${length} for ${words} numbers and ${bytes} bytes`;
  }
  return { length, seq, status, words, bytes };
}

/**
 * The core's side: copies the complete reply frame in `f` (header `h`) into the core's channel
 * `ch`: status, reply numbers (the rest, up to `clear` numbers, set to NaN, which no answer
 * reads as valid) and side channel.
 */
export function decodeReply(f: FrameBuffer, h: ReplyHeader, ch: ChannelViews, clear: number): void {
  const reply = ch.reply, src = f.numbers;
  for (let i = 0; i < h.words; i++) reply[i] = src[i];
  for (let i = h.words; i < clear; i++) reply[i] = NaN;
  if (h.bytes > 0) {
    ch.repBytes.set(new Uint8Array(f.bytes.buffer, REP_HEADER + h.words * 8, h.bytes), 0);
  }
  ch.hdr[H_STATUS] = h.status;
  ch.hdr[H_REP_BYTES] = h.bytes;
}
