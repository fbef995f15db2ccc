/**
 * {@linkcode BatchPolicy}: the side of a sandbox the core calls, whatever carries the batches
 * (a Worker on a SharedArrayBuffer, `sandbox.ts`; a child process on pipes,
 * `sandbox_process.ts`). It queues the void hooks as ops in the channel's layout (`channel.ts`),
 * sends them with the next call that needs an answer (one round trip), and reads the reply with
 * the core's hostile reader (`reply_reader.ts`). The transport only moves the batch and waits
 * for its reply within the budget.
 *
 * @module
 */
import {
  type ChannelViews,
  OP_ADD,
  OP_DESCHED,
  OP_EXTEND,
  OP_HALT,
  OP_INIT,
  OP_PARAMS,
  OP_PICK,
  OP_QUEUE,
  OP_REMOVE,
  OP_STRIDE,
  OP_SYNC,
  OP_TICK,
  OP_WAKE,
  OPS_CAP,
  writeJson,
} from "./channel.ts";
import type {
  DescheduleReason,
  PickDecision,
  PolicyEvent,
  SchedParams,
  SlotId,
  VcpuId,
  VcpuInfo,
} from "./contract.ts";
import type { PolicyPort, PortInit } from "./policy_port.ts";
import { nextSeq, ReplyReader, type SentRequest } from "./reply_reader.ts";
import { PolicyFault } from "./watchdog.ts";

/** `onDeschedule` reasons as the channel codes them (`REASONS` in `channel.ts`). */
const REASON_CODE: Record<DescheduleReason, number> = {
  slice: 0,
  preempt: 1,
  yield: 2,
  revoked: 3,
};

/**
 * A policy in a sandbox, called synchronously over a channel; see the module documentation.
 * A subclass provides the transport: {@linkcode BatchPolicy.exchange},
 * {@linkcode BatchPolicy.kill} and `close`.
 */
export abstract class BatchPolicy implements PolicyPort {
  /** The plugin's name (its `name`, else its file name). */
  readonly name: string;
  /** The plugin's URL. */
  readonly url: string;
  /** The channel: ops and request bytes are queued here, the reply is read from here. */
  protected readonly ch: ChannelViews;
  /** The core's reader of this channel's replies. */
  protected readonly reader: ReplyReader;
  /** What the core wrote for the request in flight or last answered (`seq`: int32). */
  protected readonly sent: SentRequest = { seq: 0, nops: 0, bytes: 0, spinNs: 0 };
  /** Why the sandbox can take no more calls (null while it can). */
  protected dead: string | null = null;
  #params: SchedParams;
  #nops = 0;
  #bytes = 0;
  #tickNs = 0;
  #canExtend = false;
  #canQueue = false;
  #ratelimit = true;
  #initKey = "";
  #lastHook = "";
  #roundTrips = 0;

  /**
   * @param ch the channel views the ops are queued in and the reply is read from
   * @param name the plugin's name
   * @param url the plugin's URL
   * @param params the plugin's parameters
   */
  protected constructor(ch: ChannelViews, name: string, url: string, params: SchedParams) {
    this.ch = ch;
    this.name = name;
    this.url = url;
    this.#params = { ...params };
    this.reader = new ReplyReader(ch);
  }

  /**
   * Sends the request described by {@linkcode BatchPolicy.sent} (its ops and request bytes are
   * in the channel) and returns once its reply is in the channel. Throws a {@linkcode PolicyFault}
   * for a timeout, a crash, or a channel that holds what the sandbox could not have written.
   */
  protected abstract exchange(hook: string): void;

  /** Ends the sandbox at once (a runaway, a corrupted channel); `why` says why. */
  protected abstract kill(why: string): void;

  /** Releases the sandbox. Idempotent; never throws. */
  abstract close(): void;

  /** The tick period after `init` (ns). */
  get tickNs(): number {
    return this.#tickNs;
  }

  /** Round trips so far (batches sent). */
  get roundTrips(): number {
    return this.#roundTrips;
  }

  /** The last hook sent (for diagnostics). */
  get lastHook(): string {
    return this.#lastHook;
  }

  // ------------------------------------------------------------------ queueing

  #op(op: number, a = 0, b = 0, c = 0, d = 0, e = 0, f = 0): void {
    if (this.dead !== null) {
      throw new PolicyFault("crash", op === OP_INIT ? "init" : "", this.dead);
    }
    if (this.#nops >= OPS_CAP) this.#roundTrip("(queued hooks)");
    const o = this.#nops++ * OP_STRIDE;
    const ops = this.ch.ops;
    ops[o] = op;
    ops[o + 1] = a;
    ops[o + 2] = b;
    ops[o + 3] = c;
    ops[o + 4] = d;
    ops[o + 5] = e;
    ops[o + 6] = f;
  }

  #json(op: number, value: unknown, hook: string): void {
    let len = writeJson(this.ch.reqBytes, this.#bytes, value);
    if (len < 0) {
      this.#roundTrip(hook);
      len = writeJson(this.ch.reqBytes, 0, value);
      if (len < 0) throw new PolicyFault("invalid", hook, `${hook}: argument too large`);
    }
    const off = this.#bytes;
    this.#bytes += len;
    this.#op(op, off, len);
  }

  /**
   * Sends the queued ops and waits for the reply (the transport's `exchange`). Throws a
   * PolicyFault for a plugin fault, a timeout, or a channel that holds what the sandbox could
   * not have written (`reply_reader.ts`: `"corrupted channel"`, thrown when seen).
   */
  #roundTrip(hook: string): void {
    if (this.dead !== null) throw new PolicyFault("crash", hook, this.dead);
    const sent = this.sent;
    this.#lastHook = hook;
    try {
      sent.seq = nextSeq(sent.seq);
      sent.nops = this.#nops;
      sent.bytes = this.#bytes;
      this.#nops = 0;
      this.#bytes = 0;
      this.#roundTrips++;
      this.exchange(hook);
      const fault = this.reader.readStatus(sent, hook);
      if (fault !== null) {
        this.dead = `ejected after: ${fault.message}`;
        throw new PolicyFault(fault.reason, fault.hook, fault.message);
      }
      this.reader.checkUnchanged(sent);
    } catch (e) {
      if (e instanceof PolicyFault && e.reason === "corrupted channel") this.kill(e.message);
      throw e;
    }
  }

  /**
   * Reads an answer with `read` (a {@linkcode ReplyReader} method), then checks again that the
   * reply did not change while it was read; a corrupted one ends the sandbox.
   */
  #answer<T>(read: () => T): T {
    try {
      const r = read();
      this.reader.checkUnchanged(this.sent);
      return r;
    } catch (e) {
      if (e instanceof PolicyFault) this.kill(e.message);
      throw e;
    }
  }

  // ------------------------------------------------------------------ PolicyPort

  /** `init(ctx)`; a repeat with the same values is a no-op. */
  init(ctx: PortInit): void {
    const key = `${ctx.slots}/${ctx.maxSliceNs}/${ctx.ratelimitNs}`;
    if (key === this.#initKey) return;
    this.#json(OP_INIT, { ...ctx, params: this.#params }, "init");
    this.#roundTrip("init");
    const { tickNs, canExtend, canQueue, ratelimit } = this.#answer(() => this.reader.init());
    this.#canQueue = canQueue;
    this.#ratelimit = ratelimit;
    this.#tickNs = tickNs;
    this.#canExtend = canExtend;
    this.#initKey = key;
  }

  /** Queues `addVcpu`. */
  addVcpu(info: VcpuInfo): void {
    this.#json(OP_ADD, info, "addVcpu");
  }

  /** Queues `removeVcpu`. */
  removeVcpu(id: VcpuId): void {
    this.#op(OP_REMOVE, id);
  }

  /** Queues `onHalt`. */
  onHalt(vcpu: VcpuId, now: number, ranNs: number, stolenNs = 0): void {
    this.#op(OP_HALT, vcpu, now, ranNs, stolenNs);
  }

  /** Queues `onDeschedule`. */
  onDeschedule(
    vcpu: VcpuId,
    slot: SlotId,
    ranNs: number,
    reason: DescheduleReason,
    now: number,
    stolenNs = 0,
  ): void {
    this.#op(OP_DESCHED, vcpu, slot, ranNs, REASON_CODE[reason], now, stolenNs);
  }

  /** Queues `setParams`. */
  setParams(target: string, params: SchedParams): void {
    if (target === "*") Object.assign(this.#params, params);
    this.#json(OP_PARAMS, { target, params }, "setParams");
  }

  /** `pickNext`, with the queued hooks before it: one round trip. */
  pickNext(slot: SlotId, now: number): PickDecision | null {
    this.#op(OP_PICK, slot, now);
    this.#roundTrip("pickNext");
    return this.#answer(() => this.reader.pick());
  }

  /** `onWake`, with the queued hooks before it: one round trip. */
  onWake(vcpu: VcpuId, now: number): SlotId {
    this.#op(OP_WAKE, vcpu, now);
    this.#roundTrip("onWake");
    return this.#answer(() => this.reader.wake());
  }

  /** Whether the plugin has `queueNext` (known after `init`). */
  get canQueue(): boolean {
    return this.#canQueue;
  }

  /** Whether the plugin's preemptions wait for the rate limit (its `ratelimit`, known after `init`). */
  get ratelimit(): boolean {
    return this.#ratelimit;
  }

  /** `queueNext`, with the queued hooks before it: one round trip. */
  queueNext(slot: SlotId, running: VcpuId, now: number): PickDecision | null {
    this.#op(OP_QUEUE, slot, running, now);
    this.#roundTrip("queueNext");
    return this.#answer(() => this.reader.pick("queueNext"));
  }

  /** Whether the plugin has `extendSlice` (known after `init`). */
  get canExtend(): boolean {
    return this.#canExtend;
  }

  /** `extendSlice`, with the queued hooks before it: one round trip. */
  extendSlice(
    vcpu: VcpuId,
    slot: SlotId,
    ranNs: number,
    now: number,
    stolenNs = 0,
  ): number | null {
    this.#op(OP_EXTEND, vcpu, slot, ranNs, now, stolenNs);
    this.#roundTrip("extendSlice");
    return this.#answer(() => this.reader.extend());
  }

  /** `onTick`, with the queued hooks before it: one round trip. */
  onTick(now: number): SlotId[] {
    this.#op(OP_TICK, now);
    this.#roundTrip("onTick");
    return this.#answer(() => this.reader.tick());
  }

  /** Sends the queued hooks now (one round trip if any are queued). */
  flush(): void {
    if (this.#nops === 0) return;
    this.#op(OP_SYNC);
    this.#roundTrip("(queued hooks)");
  }

  /** Events reported since the last call. */
  takeEvents(): PolicyEvent[] {
    return this.reader.takeEvents();
  }
}

/**
 * A starved (not computing) plugin may take this many budgets, and at least
 * {@linkcode STARVED_LIMIT_MS}, before it times out.
 */
export const HARD_LIMIT = 10;
/**
 * The least wall time a plugin that is not computing gets (ms). Its thread can be held off the
 * CPU through no fault of its own: while 256 EMT Workers started (64 VMs x 4 vCPUs on 2 slots)
 * it waited in the kernel behind their mmap/munmap calls, and once in five runs a sound credit
 * answered a tick after more than 200 ms, ten 20 ms budgets. A plugin that blocks itself (say,
 * in `Atomics.wait`) is still ejected, after this long.
 */
export const STARVED_LIMIT_MS = 2000;

/** How a transport waits for a reply (see {@linkcode waitWithinBudget}). */
export interface BudgetWait {
  /** The budget (ms of wall time). */
  budgetMs: number;
  /** Whether the reply is complete (throws a `"corrupted channel"` fault when it sees one). */
  answered(): boolean;
  /** Sleeps until the reply may have come, at most `ms`. */
  sleep(ms: number): void;
  /** ns the plugin's thread has run on a CPU so far; NaN when unknown. */
  cpuNs(): number;
}

/** Why a reply did not come: the wall time waited and whether the plugin computed all along. */
export interface BudgetOverrun {
  /** ms waited. */
  waitedMs: number;
  /** Whether the plugin used a quarter budget of CPU in each of the last {@linkcode BUSY_WINDOWS} half budgets. */
  busy: boolean;
}

/**
 * Half-budget windows in a row a plugin must compute through, past its budget, before its call
 * counts as a loop: 4 (two more budgets). A sound policy's call can take tens of milliseconds of
 * CPU once in a while that are not its own code: the child's garbage collection or compiling
 * on its main thread. Under the rt scenario a sound rtds's `onTick` was once seen computing for
 * 31 ms (1 run in 30; the next check then ejected it), against invariant 9 of the design (a
 * correct policy is never ejected). An endless loop is still ejected three budgets after the
 * call (60 ms at the default 20 ms), and its process killed at once.
 */
export const BUSY_WINDOWS = 4;

/**
 * Waits for a reply, a quarter budget at a time, checking the channel at every wake-up. At the
 * budget (wall clock), if the plugin's CPU time is known, looks at it over half-budget windows:
 * a plugin that computes through {@linkcode BUSY_WINDOWS} windows in a row (a quarter budget
 * of CPU in each) has overrun; one that is only starved of CPU by other threads, or computes in
 * a burst and then answers, gets more time, up to {@linkcode HARD_LIMIT} budgets or
 * {@linkcode STARVED_LIMIT_MS}, whichever is longer. Without the CPU time, the budget is
 * wall-clock. Returns null once answered, else the overrun.
 */
export function waitWithinBudget(w: BudgetWait, t0: number): BudgetOverrun | null {
  const budget = w.budgetMs;
  const check = budget / 4;
  let deadline = t0 + budget;
  let cpuAtWindow = -1;
  let busyWindows = 0;
  for (;;) {
    const t = performance.now();
    if (w.answered()) return null;
    if (t >= deadline) {
      const cpu = w.cpuNs(); // NaN: unreadable
      if (cpu >= 0 && cpuAtWindow >= 0) {
        busyWindows = (cpu - cpuAtWindow) / 1e6 >= budget / 4 ? busyWindows + 1 : 0;
      }
      const busy = busyWindows >= BUSY_WINDOWS;
      if (!(cpu >= 0) || busy || t - t0 >= Math.max(HARD_LIMIT * budget, STARVED_LIMIT_MS)) {
        return { waitedMs: t - t0, busy };
      }
      cpuAtWindow = cpu;
      deadline = t + budget / 2;
    }
    w.sleep(Math.min(deadline - t, check));
  }
}

/** The timeout fault for an overrun of `budgetMs` in `hook`; `what` names what was ended. */
export function timeoutFault(
  hook: string,
  budgetMs: number,
  o: BudgetOverrun,
  what: string,
): PolicyFault {
  const waited = o.waitedMs.toFixed(1);
  return new PolicyFault(
    "timeout",
    hook,
    `${hook} did not answer within its budget of ${budgetMs} ms (waited ${waited} ms` +
      `${o.busy ? ", the plugin computing all along" : ""}; an endless loop?); ${what}`,
  );
}
