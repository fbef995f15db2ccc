/**
 * The core's reader of the sandbox channel's replies (`channel.ts`), which treats every word
 * and byte it reads as hostile input: a plugin that gets hold of the channel's buffer can write
 * any of it at any time, and the core must neither crash nor wait on it.
 *
 * - Every length, count and index read from the channel is checked against the channel's
 *   bounds before it is used; each word is read once (what was checked is what is used).
 * - A reply the sandbox's own code could not have written is "impossible": a status other than
 *   ok or fault, a reply length outside the side channel, JSON that does not parse or has
 *   another shape, a `pickNext` code other than null/decision/reserved, a non-integer vCPU,
 *   slot or count, a NaN slice, a `tickNs` the sandbox's checks refuse. So is a header word only
 *   the core writes (request sequence, op count, request bytes, spin budget) that changed, and a
 *   reply sequence number that is neither the last answered request nor the pending one (torn:
 *   also when it changes while the reply is read). Each is a {@linkcode PolicyFault} with the
 *   reason `"corrupted channel"`, the plugin's fault, thrown at once, so the plugin is ejected
 *   when the corruption is seen, within its budget: never a wait, never an exception of another
 *   kind.
 * - What is possible but wrong (an unknown vCPU, a slot out of range, a slice too long) is left
 *   to the core's own checks, which eject with `"invalid"`.
 *
 * Kept apart from the transport so that any sandbox whose reply has this layout (a Worker on a
 * `SharedArrayBuffer`, a child process whose reply frames are copied into the core's own copy of the
 * channel, `sandbox_process.ts`) uses the same reader.
 *
 * @module
 */
import {
  BYTES_CAP,
  type ChannelViews,
  EVENTS_CAP,
  H_NOPS,
  H_REP,
  H_REP_BYTES,
  H_REQ,
  H_REQ_BYTES,
  H_SPIN_NS,
  H_STATUS,
  readJson,
  REPLY_CAP,
  ST_FAULT,
  ST_OK,
} from "./channel.ts";
import type { PickDecision, PolicyEvent, SlotId, VcpuId } from "./contract.ts";
import { MIN_TICK_NS } from "./load.ts";
import { PolicyFault } from "./watchdog.ts";

/** The header words the core wrote for the pending request (all int32). */
export interface SentRequest {
  /** Request sequence number (`H_REQ`), int32. */
  seq: number;
  /** Ops in the request (`H_NOPS`). */
  nops: number;
  /** Request side channel bytes (`H_REQ_BYTES`). */
  bytes: number;
  /** The sandbox's spin budget (`H_SPIN_NS`). */
  spinNs: number;
}

/** A fault the sandbox reported for a batch (a hook threw or returned something invalid). */
export interface ReportedFault {
  /** Why. */
  reason: "throw" | "invalid";
  /** The hook. */
  hook: string;
  /** What happened. */
  message: string;
}

const NO_EVENTS: PolicyEvent[] = [];

/** Longest text of a reported fault or event kept (the rest is cut, with "..."). */
export const TEXT_CAP = 2000;

/** The sequence number before `seq`, as an int32 (the header wraps). */
export function prevSeq(seq: number): number {
  return (seq - 1) | 0;
}

/** The sequence number after `seq`, as an int32. */
export function nextSeq(seq: number): number {
  return (seq + 1) | 0;
}

/** Reads replies from one channel; see the module documentation. */
export class ReplyReader {
  readonly #hdr: Int32Array;
  readonly #reply: Float64Array;
  readonly #repBytes: Uint8Array;
  #hook = "";
  #events: PolicyEvent[] = NO_EVENTS;

  /**
   * Reads from `views` (only `hdr`, `reply` and `repBytes` are used; `reply` is only ever
   * indexed, with indices below `REPLY_CAP`).
   */
  constructor(views: Pick<ChannelViews, "hdr" | "reply" | "repBytes">) {
    this.#hdr = views.hdr;
    this.#reply = views.reply;
    this.#repBytes = views.repBytes;
  }

  #corrupt(what: string): PolicyFault {
    return new PolicyFault("corrupted channel", this.#hook, `corrupted channel: ${what}`);
  }

  /**
   * Before a request is sent: the channel must be idle, both sequence words at `last` (the last
   * request, answered). Throws a `"corrupted channel"` fault otherwise.
   */
  checkIdle(last: number, hook: string): void {
    this.#hook = hook;
    const req = Atomics.load(this.#hdr, H_REQ);
    const rep = Atomics.load(this.#hdr, H_REP);
    if (req !== last) throw this.#corrupt(`request sequence ${req} between requests, sent ${last}`);
    if (rep !== last) {
      throw this.#corrupt(`reply sequence ${rep} between requests, expected ${last}`);
    }
  }

  /**
   * Whether the request `sent` is answered: `true` when the reply sequence is `sent.seq`,
   * `false` while it is the one before and the core's own words are as the core wrote them.
   * Anything else throws a `"corrupted channel"` fault.
   */
  answered(sent: SentRequest, hook: string): boolean {
    this.#hook = hook;
    const rep = Atomics.load(this.#hdr, H_REP);
    if (rep === sent.seq) return true;
    if (rep !== prevSeq(sent.seq)) {
      throw this.#corrupt(`reply sequence ${rep}, expected ${prevSeq(sent.seq)} or ${sent.seq}`);
    }
    this.#checkSent(sent);
    return false;
  }

  #checkSent(sent: SentRequest): void {
    const hdr = this.#hdr;
    const req = Atomics.load(hdr, H_REQ);
    if (req !== sent.seq) throw this.#corrupt(`request sequence ${req}, sent ${sent.seq}`);
    const nops = Atomics.load(hdr, H_NOPS);
    if (nops !== sent.nops) throw this.#corrupt(`op count ${nops}, sent ${sent.nops}`);
    const bytes = Atomics.load(hdr, H_REQ_BYTES);
    if (bytes !== sent.bytes) throw this.#corrupt(`request bytes ${bytes}, sent ${sent.bytes}`);
    const spin = Atomics.load(hdr, H_SPIN_NS);
    if (spin !== sent.spinNs) throw this.#corrupt(`spin budget ${spin}, set ${sent.spinNs}`);
  }

  /**
   * Reads the status and side channel of the answered request `sent`: returns the fault the
   * sandbox reported (`null`: every op ran; then read the answer, and call
   * {@linkcode ReplyReader.checkUnchanged}) and keeps the reported events for
   * {@linkcode ReplyReader.takeEvents}. Throws a `"corrupted channel"` fault for an impossible
   * reply, also for a reported fault in a reply that changed while it was read.
   */
  readStatus(sent: SentRequest, hook: string): ReportedFault | null {
    this.#hook = hook;
    const hdr = this.#hdr;
    const status = Atomics.load(hdr, H_STATUS);
    if (status !== ST_OK && status !== ST_FAULT) throw this.#corrupt(`reply status ${status}`);
    const len = Atomics.load(hdr, H_REP_BYTES);
    if (len < 0 || len > BYTES_CAP || len > this.#repBytes.length) {
      throw this.#corrupt(`reply length ${len} outside 0..${BYTES_CAP}`);
    }
    let fault: ReportedFault | null = null;
    if (len > 0) {
      let json: unknown;
      try {
        json = readJson(this.#repBytes, 0, len);
      } catch (e) {
        if (!(e instanceof SyntaxError)) throw e;
        throw this.#corrupt(`reply of ${len} bytes is not JSON`);
      }
      if (json === null || typeof json !== "object" || Array.isArray(json)) {
        throw this.#corrupt("reply JSON is not an object");
      }
      const r = json as Record<string, unknown>;
      for (const k in r) {
        if (k !== "fault" && k !== "events") throw this.#corrupt(`reply JSON has ${text(k, 40)}`);
      }
      if (r.fault !== undefined) fault = this.#fault(r.fault);
      if (r.events !== undefined) this.#readEvents(r.events);
    }
    if ((status === ST_FAULT) !== (fault !== null)) {
      throw this.#corrupt(
        status === ST_FAULT ? "fault status without a fault" : "fault with ok status",
      );
    }
    if (fault !== null) this.checkUnchanged(sent);
    return fault;
  }

  #fault(f: unknown): ReportedFault {
    if (f === null || typeof f !== "object" || Array.isArray(f)) {
      throw this.#corrupt("reply fault is not an object");
    }
    const { reason, hook, message } = f as Record<string, unknown>;
    if (reason !== "throw" && reason !== "invalid") {
      throw this.#corrupt(`fault reason ${text(String(reason), 40)}`);
    }
    if (typeof hook !== "string" || typeof message !== "string") {
      throw this.#corrupt("fault without a hook or message");
    }
    return { reason, hook: text(hook, 100), message: text(message, TEXT_CAP) };
  }

  /** The events read since the last call, in order. */
  takeEvents(): PolicyEvent[] {
    const e = this.#events;
    this.#events = NO_EVENTS;
    return e;
  }

  #readEvents(list: unknown): void {
    if (!Array.isArray(list)) throw this.#corrupt("reply events are not a list");
    if (list.length > EVENTS_CAP + 1) throw this.#corrupt(`${list.length} events in one reply`);
    const out: PolicyEvent[] = [];
    for (let i = 0; i < list.length; i++) {
      const e: unknown = list[i];
      if (e === null || typeof e !== "object" || Array.isArray(e)) {
        throw this.#corrupt("an event is not an object");
      }
      const { kind, vcpu, value, detail } = e as Record<string, unknown>;
      let keys = 0;
      for (const _ in e) keys++;
      const ev: PolicyEvent = { kind: "" };
      let n = 1;
      if (typeof kind !== "string") throw this.#corrupt("an event without a kind");
      ev.kind = text(kind, 100);
      if (vcpu !== undefined) {
        if (typeof vcpu !== "number" || !Number.isFinite(vcpu)) throw this.#corrupt("event vcpu");
        ev.vcpu = vcpu;
        n++;
      }
      if (value !== undefined) {
        if (typeof value !== "number" || !Number.isFinite(value)) {
          throw this.#corrupt("event value");
        }
        ev.value = value;
        n++;
      }
      if (detail !== undefined) {
        if (typeof detail !== "string") throw this.#corrupt("event detail");
        ev.detail = text(detail, TEXT_CAP);
        n++;
      }
      if (keys !== n) throw this.#corrupt("an event with unknown fields");
      out.push(ev);
    }
    if (this.#events === NO_EVENTS) this.#events = out;
    else for (const ev of out) this.#events.push(ev);
  }

  /**
   * After the answer was read: the reply must still be the one read (the reply sequence and
   * the core's own words unchanged), else it was torn. Throws a `"corrupted channel"` fault.
   */
  checkUnchanged(sent: SentRequest): void {
    const rep = Atomics.load(this.#hdr, H_REP);
    if (rep !== sent.seq) throw this.#corrupt(`reply sequence changed to ${rep} while read`);
    this.#checkSent(sent);
  }

  /**
   * `init`'s answer: the tick period, whether the plugin has `extendSlice` and `queueNext`, and
   * whether its preemptions wait for the rate limit.
   */
  init(): { tickNs: number; canExtend: boolean; canQueue: boolean; ratelimit: boolean } {
    const tickNs = this.#reply[0], ext = this.#reply[1], queue = this.#reply[2];
    const rl = this.#reply[3];
    if (!(tickNs === 0 || (tickNs >= MIN_TICK_NS && tickNs < Infinity))) {
      throw this.#corrupt(`tickNs ${tickNs}`);
    }
    if (ext !== 0 && ext !== 1) throw this.#corrupt(`extendSlice flag ${ext}`);
    if (queue !== 0 && queue !== 1) throw this.#corrupt(`queueNext flag ${queue}`);
    if (rl !== 0 && rl !== 1) throw this.#corrupt(`ratelimit flag ${rl}`);
    return { tickNs, canExtend: ext === 1, canQueue: queue === 1, ratelimit: rl === 1 };
  }

  /**
   * `pickNext`'s (or `queueNext`'s, `hook`) answer: `null`, or an integer vCPU and a slice that
   * is a number.
   */
  pick(hook = "pickNext"): PickDecision | null {
    const r = this.#reply;
    const code = r[0];
    if (code === 0) return null;
    if (code !== 1 && code !== 2) throw this.#corrupt(`${hook} answer code ${code}`);
    const vcpu: VcpuId = r[1], sliceNs = r[2];
    if (!Number.isInteger(vcpu)) throw this.#corrupt(`${hook} vCPU ${vcpu}`);
    if (Number.isNaN(sliceNs)) throw this.#corrupt(`${hook} slice NaN`);
    return code === 2 ? { vcpu, sliceNs, reserved: true } : { vcpu, sliceNs };
  }

  /** `onWake`'s answer: an integer slot, `-1` for none. */
  wake(): SlotId {
    const slot = this.#reply[0];
    if (!Number.isInteger(slot)) throw this.#corrupt(`onWake slot ${slot}`);
    return slot;
  }

  /** `onTick`'s answer: at most `REPLY_CAP - 1` integer slots. */
  tick(): SlotId[] {
    const r = this.#reply;
    const n = r[0];
    if (!Number.isInteger(n) || n < 0 || n > REPLY_CAP - 1) {
      throw this.#corrupt(`onTick slot count ${n}`);
    }
    const out: SlotId[] = [];
    for (let i = 1; i <= n; i++) {
      const s = r[i];
      if (!Number.isInteger(s)) throw this.#corrupt(`onTick slot ${s}`);
      out.push(s);
    }
    return out;
  }

  /** `extendSlice`'s answer: `null` or a slice that is a number. */
  extend(): number | null {
    const code = this.#reply[0];
    if (code === 0) return null;
    if (code !== 1) throw this.#corrupt(`extendSlice answer code ${code}`);
    const slice = this.#reply[1];
    if (Number.isNaN(slice)) throw this.#corrupt("extendSlice slice NaN");
    return slice;
  }
}

/** `s`, cut to `max` characters. */
function text(s: string, max: number): string {
  return s.length > max ? s.slice(0, max) + "..." : s;
}
