/**
 * The trace: a binary ring of scheduling events, recorded by the scheduler core's thread as it
 * carries out decisions on the EMTs, and the decoded form the exporters read.
 *
 * One record is {@linkcode RECORD_BYTES} bytes, little-endian:
 *
 * | offset | type | field                                                                |
 * | ------ | ---- | -------------------------------------------------------------------- |
 * | 0      | f64  | time, CLOCK_MONOTONIC ns                                             |
 * | 8      | f64  | value: slice ns, ran ns, latency ns, policy value (by type)          |
 * | 16     | i32  | vCPU (scheduler id; -1: none)                                        |
 * | 20     | i16  | slot (-1: none)                                                      |
 * | 22     | u8   | type ({@linkcode TRACE})                                             |
 * | 23     | u8   | reason / source / hook ({@linkcode RUN_END_REASON}, ...)             |
 * | 24     | i32  | aux: a string id (policy event kind, eject reason), or 0             |
 * | 28     | u32  | sequence number (wraps)                                              |
 *
 * When the ring is full the oldest records are overwritten and counted as dropped. Records are
 * in the order the core handled them; an EMT-reported time (`runEnd`, `wake`, `halt`) can be a
 * few µs before the core's time of a record written just before it: sort by time to read.
 *
 * @module
 */

/** Bytes per record. */
export const RECORD_BYTES = 32;

/** Event types. */
export const TRACE = {
  /**
   * A vCPU got a slot: value = slice ns, aux = 1 for reserved time, reason =
   * {@linkcode GRANT_VIA} (decided by `pickNext`, or ahead by `queueNext`, and then handed over
   * by the leaving EMT itself, dated at that hand-off).
   */
  grant: 1,
  /**
   * A vCPU left its slot: reason = {@linkcode RUN_END_REASON}, value = guest ns it ran. An
   * `extend` run end is followed by a `grant` of the same vCPU at the same time: its slice was
   * renewed without leaving guest mode (value = slot time of the part that ended). aux = µs
   * of the grant other host threads took from its EMT's CPU (steal, not charged).
   */
  runEnd: 2,
  /** A halted vCPU became runnable: reason = {@linkcode WAKE_SOURCE_NAME} index. */
  wake: 3,
  /** A vCPU halted (it was waiting for a slot, not running). */
  halt: 4,
  /** The core asked a vCPU to leave its slot (a poke). */
  preempt: 5,
  /** One call into the policy and its answer: value = latency ns, reason = hook. */
  decision: 6,
  /** The plugin was ejected: aux = reason text id. */
  eject: 7,
  /** A policy event the plugin reported: aux = kind text id, value = its value. */
  policy: 8,
  /** A vCPU joined (aux = its VM's name id, value = index in the VM). */
  vcpuAdd: 9,
  /** A vCPU left. */
  vcpuRemove: 10,
  /**
   * The core handled an EMT's event (`vcpu`'s) more than {@linkcode CORE_LATE_NS} after it
   * came: value = that lag, ns; aux = µs of it the core's thread spent asleep, woken by the event
   * and not yet running (the host's part: nothing of deno-vmm runs above the core on its CPU);
   * the rest it was busy with earlier work (deno-vmm's part).
   */
  coreLate: 11,
} as const;

/** The least lag of the core behind an EMT's event that the trace records (`coreLate`), ns. */
export const CORE_LATE_NS = 200_000;

/** A trace event type. */
export type TraceType = typeof TRACE[keyof typeof TRACE];

/** Why a vCPU left its slot (`runEnd.reason`). */
export const RUN_END_REASON = ["halt", "slice", "preempt", "yield", "gone", "extend"] as const;

/** How a grant came about (`grant.reason`). */
export const GRANT_VIA = { pick: 0, handed: 1, ahead: 2 } as const;

/** What woke a vCPU (`wake.reason`): `grant_table.ts` WAKE_SOURCE, by index. */
export const WAKE_SOURCE_NAME = ["unknown", "timer", "ipi", "device", "start"] as const;

/** Hooks a `decision` names (`decision.reason`). */
export const DECISION_HOOK = [
  "wake",
  "halt",
  "slice",
  "preempt",
  "yield",
  "tick",
  "other",
] as const;

/** One decoded record. */
export interface TraceRecord {
  /** CLOCK_MONOTONIC ns. */
  t: number;
  /** Type. */
  type: TraceType;
  /** vCPU id, or -1. */
  vcpu: number;
  /** Slot, or -1. */
  slot: number;
  /** Reason / source / hook index. */
  reason: number;
  /** Value (by type). */
  value: number;
  /** String id (by type), index into {@linkcode TraceData.strings}. */
  aux: number;
}

/** A vCPU as the trace names it. */
export interface TraceVcpu {
  /** Scheduler id. */
  id: number;
  /** VM name. */
  vm: string;
  /** Index in its VM. */
  index: number;
  /**
   * Its VM's scheduling parameters when it joined (weight, cap, period_ms, ...); absent in
   * traces written before they were recorded. Later `setParams` changes are not recorded.
   */
  params?: Record<string, number | string | boolean>;
}

/** A collected trace: the records in order plus what they refer to. */
export interface TraceData {
  /** Format version. */
  version: 1;
  /** Slots of the scheduler. */
  slots: number;
  /** Policy in charge when collected. */
  policy: string;
  /** The core's context-switch rate limit, ns (absent in older traces). */
  ratelimitNs?: number;
  /** The policy's parameters at start (absent in older traces). */
  policyParams?: Record<string, number | string | boolean>;
  /** Every vCPU the trace mentions. */
  vcpus: TraceVcpu[];
  /** Interned strings (policy event kinds, eject reasons, VM names). */
  strings: string[];
  /** Records overwritten because the ring was full. */
  dropped: number;
  /** The records, oldest first, {@linkcode RECORD_BYTES} each. */
  records: ArrayBuffer;
}

/** The recording side: a ring in this thread's memory. */
export class TraceRecorder {
  #buf: ArrayBuffer;
  #dv: DataView;
  #cap: number;
  #next = 0;
  #count = 0;
  #strings: string[] = [""];
  #ids = new Map<string, number>([["", 0]]);
  #vcpus = new Map<number, TraceVcpu>();
  /** Whether recording is on. */
  enabled: boolean;

  /**
   * @param capacity records kept (the newest)
   * @param enabled start recording at once
   */
  constructor(capacity = 1 << 18, enabled = true) {
    this.#cap = capacity;
    this.#buf = new ArrayBuffer(capacity * RECORD_BYTES);
    this.#dv = new DataView(this.#buf);
    this.enabled = enabled;
  }

  /** The id of `s` in the string table. */
  intern(s: string): number {
    let id = this.#ids.get(s);
    if (id === undefined) {
      id = this.#strings.length;
      this.#strings.push(s);
      this.#ids.set(s, id);
    }
    return id;
  }

  /** Names a vCPU (kept even when the ring overwrites its `vcpuAdd`). */
  nameVcpu(v: TraceVcpu): void {
    this.#vcpus.set(v.id, v);
  }

  /** Appends one record. */
  record(
    type: TraceType,
    t: number,
    vcpu = -1,
    slot = -1,
    value = 0,
    reason = 0,
    aux = 0,
  ): void {
    if (!this.enabled) return;
    const o = (this.#next % this.#cap) * RECORD_BYTES;
    const dv = this.#dv;
    dv.setFloat64(o, t, true);
    dv.setFloat64(o + 8, value, true);
    dv.setInt32(o + 16, vcpu, true);
    dv.setInt16(o + 20, slot, true);
    dv.setUint8(o + 22, type);
    dv.setUint8(o + 23, reason);
    dv.setInt32(o + 24, aux, true);
    dv.setUint32(o + 28, this.#next >>> 0, true);
    this.#next++;
    if (this.#count < this.#cap) this.#count++;
  }

  /** Records so far that are still in the ring. */
  get size(): number {
    return this.#count;
  }

  /** A copy of the ring, oldest first, with its tables. */
  collect(meta: {
    slots: number;
    policy: string;
    ratelimitNs?: number;
    policyParams?: Record<string, number | string | boolean>;
  }): TraceData {
    const n = this.#count;
    const out = new ArrayBuffer(n * RECORD_BYTES);
    const dst = new Uint8Array(out);
    const src = new Uint8Array(this.#buf);
    const first = this.#next - n;
    for (let i = 0; i < n; i++) {
      const o = ((first + i) % this.#cap) * RECORD_BYTES;
      dst.set(src.subarray(o, o + RECORD_BYTES), i * RECORD_BYTES);
    }
    return {
      version: 1,
      slots: meta.slots,
      policy: meta.policy,
      ...(meta.ratelimitNs !== undefined ? { ratelimitNs: meta.ratelimitNs } : {}),
      ...(meta.policyParams ? { policyParams: { ...meta.policyParams } } : {}),
      vcpus: [...this.#vcpus.values()],
      strings: [...this.#strings],
      dropped: this.#next - n,
      records: out,
    };
  }

  /** Forgets every record (the tables stay). */
  clear(): void {
    this.#next = 0;
    this.#count = 0;
  }
}

/** Decodes a trace's records. */
export function decodeTrace(data: TraceData): TraceRecord[] {
  const dv = new DataView(data.records);
  const n = data.records.byteLength / RECORD_BYTES;
  const out: TraceRecord[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const o = i * RECORD_BYTES;
    out[i] = {
      t: dv.getFloat64(o, true),
      value: dv.getFloat64(o + 8, true),
      vcpu: dv.getInt32(o + 16, true),
      slot: dv.getInt16(o + 20, true),
      type: dv.getUint8(o + 22) as TraceType,
      reason: dv.getUint8(o + 23),
      aux: dv.getInt32(o + 24, true),
    };
  }
  return out;
}

/** A trace as JSON (records base64): what `--trace-raw FILE` writes and exporters read back. */
export function traceToJson(data: TraceData): string {
  const bytes = new Uint8Array(data.records);
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return JSON.stringify({ ...data, records: btoa(bin) });
}

/** Parses {@linkcode traceToJson}'s output; throws a clear error for anything else. */
export function traceFromJson(text: string): TraceData {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(text);
  } catch (e) {
    throw new Error(`not a deno-vmm trace: ${(e as Error).message}`);
  }
  if (o?.version !== 1 || typeof o.records !== "string" || !Array.isArray(o.vcpus)) {
    throw new Error("not a deno-vmm trace (version 1 with records, vcpus, strings)");
  }
  const bin = atob(o.records);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return { ...(o as unknown as TraceData), records: bytes.buffer };
}
