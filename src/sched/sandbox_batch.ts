/**
 * The sandbox's serving side of one batch of calls (`channel.ts`), shared by both sandboxes (a
 * Worker on a SharedArrayBuffer, `sandbox_worker.ts`; a child process on pipes,
 * `sandbox_child.ts`): runs the ops in order on the plugin, checks the type of every answer and
 * writes the reply. It runs in the plugin's realm, after the realm was frozen, and calls only
 * references `intrinsics.ts` took before the plugin was imported.
 *
 * @module
 */
import {
  type ChannelViews,
  EVENTS_CAP,
  H_NOPS,
  H_REP_BYTES,
  H_STATUS,
  OP_ADD,
  OP_DESCHED,
  OP_EXTEND,
  OP_HALT,
  OP_INIT,
  OP_PARAMS,
  OP_PICK,
  OP_QUEUE,
  OP_QUIT,
  OP_REMOVE,
  OP_STRIDE,
  OP_SYNC,
  OP_TICK,
  OP_WAKE,
  readJson,
  REASONS,
  REPLY_CAP,
  type ReplyJson,
  ST_FAULT,
  ST_OK,
  writeJson,
} from "./channel.ts";
import type {
  PolicyEvent,
  SchedContext,
  SchedParams,
  SchedulerPlugin,
  VcpuInfo,
} from "./contract.ts";
import {
  checkExtend,
  checkPick,
  checkRatelimit,
  checkTick,
  checkTickNs,
  checkVoid,
  checkWake,
  errorText,
} from "./load.ts";
import { atomicsLoad, atomicsStore, isFiniteNumber } from "./intrinsics.ts";

/** Longest fault message sent (a longer one is cut): it must fit the reply side channel. */
const MESSAGE_CAP = 4000;

class HookFault {
  readonly message: string;
  constructor(
    readonly reason: "throw" | "invalid",
    readonly hook: string,
    message: string,
  ) {
    this.message = message.length > MESSAGE_CAP ? `${message.slice(0, MESSAGE_CAP)}...` : message;
  }
}

/**
 * Writes a `pickNext` or `queueNext` answer into the reply (`[0]` for null, `[1, vcpu, sliceNs]`,
 * `[2, ...]` for reserved time); returns the reply words used.
 */
function writePick(
  reply: Float64Array,
  r: { vcpu: number; sliceNs: number; reserved?: boolean } | null,
): number {
  if (r === null) {
    reply[0] = 0;
    return 1;
  }
  reply[0] = r.reserved ? 2 : 1;
  reply[1] = r.vcpu;
  reply[2] = r.sliceNs;
  return 3;
}

/** Where a sandbox keeps an asynchronous fault (an unhandled rejection, an uncaught error). */
export interface AsyncFaults {
  /** The first one since the last batch, or null. */
  message: string | null;
}

/** Runs the batches of one channel; see {@linkcode createBatchRunner}. */
export interface BatchRunner {
  /**
   * Runs the batch in the channel (`H_NOPS` ops), writes its reply (`reply`, `H_STATUS`,
   * `H_REP_BYTES`, the reply side channel), and returns whether the core asked to quit. Never
   * throws: a plugin's fault is the reply.
   */
  run(): boolean;
  /** Reply numbers the last batch's answer used (`reply[0..n)`). */
  readonly replyWords: number;
}

/**
 * The serving side of the channel, shared by the sandboxes (a Worker, a child process): calls
 * the plugin's hooks for each op of a batch, in order, checks the type of each answer, and
 * writes the batch's reply into the same channel views. `faults` is read (and cleared) at the
 * start of every batch: an asynchronous fault fails the batch.
 */
export function createBatchRunner(
  ch: ChannelViews,
  plugin: SchedulerPlugin,
  faults: AsyncFaults,
): BatchRunner {
  const { hdr, ops, reply, reqBytes, repBytes } = ch;
  let words = 0;
  let events: PolicyEvent[] = [];
  let dropped = 0;
  const report = (ev: PolicyEvent) => {
    if (events.length >= EVENTS_CAP) {
      dropped++;
      return;
    }
    const out: PolicyEvent = { kind: String(ev?.kind ?? "") };
    // Finite numbers only: JSON would turn NaN and the infinities into null.
    if (typeof ev?.vcpu === "number" && isFiniteNumber(ev.vcpu)) out.vcpu = ev.vcpu;
    if (typeof ev?.value === "number" && isFiniteNumber(ev.value)) out.value = ev.value;
    if (typeof ev?.detail === "string") out.detail = ev.detail;
    events.push(out);
  };
  let params: SchedParams = {};

  const call = (hook: string, f: () => unknown): unknown => {
    let r: unknown;
    try {
      r = f();
    } catch (err) {
      throw new HookFault("throw", hook, `${hook} threw ${errorText(err)}`);
    }
    return r;
  };
  const callVoid = (hook: string, f: () => unknown): void => {
    const bad = checkVoid(hook, call(hook, f));
    if (bad !== null) throw new HookFault("invalid", hook, bad);
  };

  /** Runs one batch; returns whether the core asked us to quit. */
  const runBatch = (): boolean => {
    const n = atomicsLoad(hdr, H_NOPS);
    let status = ST_OK;
    let json: ReplyJson | null = null;
    if (n > 0 && ops[(n - 1) * OP_STRIDE] === OP_QUIT) return true;
    let quit = false;
    words = 0;
    try {
      if (faults.message !== null) throw new HookFault("throw", "(async)", faults.message);
      for (let i = 0; i < n; i++) {
        const o = i * OP_STRIDE;
        const op = ops[o];
        const a = ops[o + 1], b = ops[o + 2], c = ops[o + 3], d = ops[o + 4], e = ops[o + 5];
        const f = ops[o + 6];
        switch (op) {
          case OP_ADD: {
            const info = readJson(reqBytes, a, b) as VcpuInfo;
            if (plugin.addVcpu) callVoid("addVcpu", () => plugin.addVcpu!(info));
            break;
          }
          case OP_REMOVE:
            if (plugin.removeVcpu) callVoid("removeVcpu", () => plugin.removeVcpu!(a));
            break;
          case OP_HALT:
            callVoid("onHalt", () => plugin.onHalt(a, b, c, d));
            break;
          case OP_DESCHED:
            if (plugin.onDeschedule) {
              callVoid("onDeschedule", () => plugin.onDeschedule!(a, b, c, REASONS[d], e, f));
            }
            break;
          case OP_PARAMS: {
            const { target, params: p } = readJson(reqBytes, a, b) as {
              target: string;
              params: SchedParams;
            };
            if (target === "*") params = { ...params, ...p };
            if (plugin.setParams) callVoid("setParams", () => plugin.setParams!(target, p));
            break;
          }
          case OP_INIT: {
            const ctx = readJson(reqBytes, a, b) as Omit<SchedContext, "report">;
            params = { ...ctx.params };
            const context: SchedContext = { ...ctx, params: { ...params }, report };
            if (plugin.init) callVoid("init", () => plugin.init!(context));
            const t = checkTickNs(plugin);
            if (typeof t === "string") throw new HookFault("invalid", "tickNs", t);
            reply[0] = t;
            reply[1] = typeof plugin.extendSlice === "function" ? 1 : 0;
            reply[2] = typeof plugin.queueNext === "function" ? 1 : 0;
            const r = checkRatelimit(plugin);
            if (typeof r === "string") throw new HookFault("invalid", "ratelimit", r);
            reply[3] = r ? 1 : 0;
            words = 4;
            break;
          }
          case OP_PICK: {
            const r = checkPick(call("pickNext", () => plugin.pickNext(a, b)));
            if (typeof r === "string") throw new HookFault("invalid", "pickNext", r);
            words = writePick(reply, r);
            break;
          }
          case OP_QUEUE: {
            const r = plugin.queueNext
              ? checkPick(call("queueNext", () => plugin.queueNext!(a, b, c)), "queueNext")
              : null;
            if (typeof r === "string") throw new HookFault("invalid", "queueNext", r);
            words = writePick(reply, r);
            break;
          }
          case OP_WAKE: {
            const r = checkWake(call("onWake", () => plugin.onWake(a, b)));
            if (typeof r === "string") throw new HookFault("invalid", "onWake", r);
            reply[0] = r;
            words = 1;
            break;
          }
          case OP_TICK: {
            const r = plugin.onTick ? checkTick(call("onTick", () => plugin.onTick!(a))) : [];
            if (typeof r === "string") throw new HookFault("invalid", "onTick", r);
            if (r.length >= REPLY_CAP) {
              throw new HookFault("invalid", "onTick", `onTick returned ${r.length} slots`);
            }
            reply[0] = r.length;
            for (let k = 0; k < r.length; k++) reply[1 + k] = r[k];
            words = 1 + r.length;
            break;
          }
          case OP_EXTEND: {
            const r = plugin.extendSlice
              ? checkExtend(call("extendSlice", () => plugin.extendSlice!(a, b, c, d, e)))
              : null;
            if (typeof r === "string") throw new HookFault("invalid", "extendSlice", r);
            if (r === null) {
              reply[0] = 0;
              words = 1;
            } else {
              reply[0] = 1;
              reply[1] = r;
              words = 2;
            }
            break;
          }
          case OP_SYNC:
            break;
          case OP_QUIT:
            quit = true;
            break;
          default:
            throw new HookFault("invalid", "(channel)", `unknown opcode ${op}`);
        }
      }
    } catch (err) {
      status = ST_FAULT;
      const f = err instanceof HookFault
        ? err
        : new HookFault("throw", "(sandbox)", errorText(err));
      json = { fault: { reason: f.reason, hook: f.hook, message: f.message } };
      faults.message = null;
    }
    if (events.length > 0 || dropped > 0) {
      if (dropped > 0) events.push({ kind: "dropped", value: dropped });
      json = { ...(json ?? {}), events };
      events = [];
      dropped = 0;
    }
    let len = 0;
    if (json !== null) {
      len = writeJson(repBytes, 0, json);
      if (len < 0) len = writeJson(repBytes, 0, { fault: json.fault });
    }
    atomicsStore(hdr, H_STATUS, status);
    atomicsStore(hdr, H_REP_BYTES, len);
    return quit;
  };

  return {
    run: runBatch,
    get replyWords() {
      return words;
    },
  };
}
