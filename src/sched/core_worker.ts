/// <reference lib="deno.worker" />
/**
 * The scheduler core's thread (trusted: it has FFI). It owns the {@linkcode SchedCore}, loads
 * the policy into its sandbox, and carries out decisions on real EMTs:
 *
 * - EMTs report events (runnable, halt, slice end, preempted, yield, gone) in their grant
 *   table's rings and ring the VMM's doorbell; this thread sleeps on the doorbell with a
 *   synchronous `Atomics.wait` (measured here: about 40 µs post-to-core with `waitAsync`, half
 *   that without the event loop), up to the core's next timer. Control messages ring the
 *   doorbell's second word; the loop then yields to the event loop until they are handled.
 * - A grant is published in the vCPU's record, then the EMT is woken with the shim's `wake`
 *   (it waits for grants in the shim's futex `halt`).
 * - A preemption revokes the grant's generation and pokes the EMT out of KVM_RUN; the slot is
 *   free only when the EMT reports `preempted` (invariant 1: never more EMTs in guest mode
 *   than slots).
 * - A choice made ahead (the plugin's `queueNext`, asked `AHEAD_DELAY_NS` after a grant while
 *   vCPUs wait) is published in the slot's hand-off word (`dispatch_table.ts`): the EMT leaving
 *   the slot reports its leave, takes the choice, wakes the chosen EMT on the slot's CPU and
 *   does not ring the doorbell (unless it was preempted): the core reads the leave at its next
 *   wake-up, at the latest just after the leaving vCPU's deadline (the core's poll timer),
 *   instead of taking slot 0's CPU from the vCPU about to enter. The core, processing that leave, finds the choice taken (or
 *   takes it itself and grants as above): either way the chosen vCPU holds the slot from the
 *   leave on. An event of a vCPU handed a slot is never processed before the leave that handed
 *   it (the leaving EMT's ring is read first).
 * - A slice extension (the plugin's `extendSlice`, asked `extendLeadNs` before the deadline
 *   while nobody waits) writes the new deadline into the live grant and moves the EMT's run
 *   timer with the shim's `extend`: the vCPU never leaves guest mode. If the EMT reached the
 *   old deadline first, it reports `sliceEnd` for the same generation and that is handled as
 *   an ordinary slice end of the extended grant.
 *
 * @module
 */
import { openShim, type ShimLibrary } from "../../ffi/shim.ts";
import { EMT_BLOCK_SIZE } from "../emt/shim_layout.ts";
import { type QueuedChoice, type SchedAction, SchedCore } from "./core.ts";
import { DispatchTableCore } from "./dispatch_table.ts";
import { DOORBELL, GrantTableCore, SCHED_EVENT } from "./grant_table.ts";
import { LocalPolicy, type PolicyPort } from "./policy_port.ts";
import { SandboxPolicy } from "./sandbox.ts";
import { ProcessSandboxPolicy } from "./sandbox_process.ts";
import {
  AHEAD_DELAY_NS,
  type CoreInit,
  type CoreReply,
  type CoreRequest,
  type PolicySpec,
} from "./runtime_protocol.ts";
import { CORE_LATE_NS, GRANT_VIA, RUN_END_REASON, TRACE, TraceRecorder } from "../trace/events.ts";
import { colocate } from "./affinity.ts";
import { releaseThread } from "./host_threads.ts";
import rr from "../../plugins/rr.ts";

/** One vCPU as this thread knows it. */
interface VcpuSlotRef {
  vm: string;
  index: number;
  table: GrantTableCore;
  emt: Deno.PointerObject;
  /** The generation of its last grant (revoked when it gives a grant back). */
  lastGeneration: number;
  /** When its slice was last extended (its trace records after it are not dated earlier). */
  extendedAt: number;
  /** Its EMT's shim block address (a leaving EMT hands it a slot through it). */
  emtAddress: number;
  /** The grant queued ahead for it and the vCPU whose leave hands it over, until granted. */
  queued: { generation: number; holder: number } | null;
}

const post = (m: CoreReply) => self.postMessage(m);

/** Trace `runEnd` reason (RUN_END_REASON index) per EMT event type. */
const RUN_END: Record<number, number> = {
  [SCHED_EVENT.halt]: 0,
  [SCHED_EVENT.sliceEnd]: 1,
  [SCHED_EVENT.preempted]: 2,
  [SCHED_EVENT.yield]: 3,
  [SCHED_EVENT.gone]: 4,
};
/**
 * While a control message is in progress the loop sleeps in the event loop at most this long
 * between drains of the doorbell and timers (ms): their latency during a hot-swap.
 */
const CONTROL_POLL_MS = 1;
/** Trace `runEnd` reason of a slice extension. */
const RUN_END_EXTEND = RUN_END_REASON.indexOf("extend");

class CoreThread {
  #init: CoreInit;
  #shim: ShimLibrary["symbols"];
  #core: SchedCore;
  #bell: Int32Array;
  #vms = new Map<string, { table: GrantTableCore; ids: number[] }>();
  #vcpus = new Map<number, VcpuSlotRef>();
  #nextId = 1;
  #lastNow = 0;
  #closed = false;
  /** Control messages handled so far (compared with the doorbell's control word). */
  controlHandled = 0;
  /** Ends the loop's sleep in the event loop early, once a control message is handled. */
  controlWake: (() => void) | null = null;
  #trace: TraceRecorder;
  #dispatch: DispatchTableCore;
  /**
   * Every VM's EMT blocks, kept for the core's lifetime: a leaving EMT may still wake a queued
   * EMT of a VM being removed through its address, which must stay valid memory.
   */
  #retained: SharedArrayBuffer[] = [];

  constructor(init: CoreInit, shim: ShimLibrary, policy: PolicyPort) {
    this.#init = init;
    this.#shim = shim.symbols;
    this.#bell = new Int32Array(init.doorbell);
    this.#dispatch = new DispatchTableCore(init.dispatch);
    this.#trace = new TraceRecorder(Math.max(1, init.traceCapacity), init.traceCapacity > 0);
    const trace = this.#trace;
    this.#core = new SchedCore({
      slots: init.slots,
      policy,
      ratelimitNs: init.ratelimitNs,
      maxSliceNs: init.maxSliceNs,
      extendLeadNs: init.extendLeadNs,
      stealAtExtend: (id, now) => {
        const v = this.#vcpus.get(id);
        if (!v) return 0;
        return v.table.restartSteal(
          v.index,
          v.lastGeneration,
          now,
          this.#shim.shim_emt_cpu_ns(v.emt),
        );
      },
      watchdog: { starvationNs: init.starvationNs, budgetNs: init.budgetNs },
      aheadDelayNs: AHEAD_DELAY_NS,
      decideAhead: init.decideAhead,
      dispatch: {
        queue: (c) => this.#queue(c),
        revoke: (c) => {
          const r = this.#dispatch.revoke(c.slot, c.holderGeneration, c.generation);
          if (r !== "handed") this.#unqueued(c);
          return r;
        },
        claim: (c) => {
          this.#unqueued(c);
          return this.#dispatch.claim(c.slot, c.holderGeneration, c.generation);
        },
      },
      now: shim.symbols.shim_now_f64(),
      onEject: (info) => {
        trace.record(
          TRACE.eject,
          info.at,
          -1,
          -1,
          0,
          0,
          trace.intern(`${info.reason}: ${info.detail}`),
        );
        post({ type: "ejected", info, fallback: "rr (built-in fallback)" });
      },
      onPolicyEvent: (e, at) =>
        trace.record(TRACE.policy, at, e.vcpu ?? -1, -1, e.value ?? 0, 0, trace.intern(e.kind)),
    });
  }

  get policyName(): string {
    return this.#core.policyName;
  }

  /** The loop's last sleep in `Atomics.wait` (from, to; ns): an event that came in it woke the core. */
  #sleptFrom = -Infinity;
  #sleptTo = -Infinity;

  #now(): number {
    const t = this.#shim.shim_now_f64();
    if (t > this.#lastNow) this.#lastNow = t;
    return this.#lastNow;
  }

  /** Publishes a choice made ahead; false when its EMT has withdrawn. */
  #queue(c: QueuedChoice): boolean {
    const to = this.#vcpus.get(c.vcpu);
    if (!to) return false;
    to.table.setQueued(to.index, c.generation, c.slot, c.reserved);
    const pin = this.#init.pinCpus;
    const ok = this.#dispatch.publish({
      slot: c.slot,
      holderGeneration: c.holderGeneration,
      generation: c.generation,
      sliceNs: c.sliceNs,
      emtAddress: to.emtAddress,
      cpu: pin.length ? pin[c.slot] : -1,
    }, () => to.table.withdrawn(to.index));
    if (ok) to.queued = { generation: c.generation, holder: c.holder };
    return ok;
  }

  #unqueued(c: QueuedChoice): void {
    const to = this.#vcpus.get(c.vcpu);
    if (to?.queued?.generation === c.generation) to.queued = null;
  }

  /** Carries out the core's decisions on the EMTs. */
  #apply(actions: SchedAction[]): void {
    const pin = this.#init.pinCpus;
    for (const a of actions) {
      const v = this.#vcpus.get(a.vcpu);
      if (!v) continue;
      if (a.type === "grant") {
        // aux 1: reserved time (the EMT holds its CPU real-time); an extension keeps it.
        // reason: GRANT_VIA (a hand-off is dated when the leaving EMT made it).
        const aux = a.reserved ? 1 : 0;
        const at = a.via === "handed" ? a.deadline - a.sliceNs : this.#lastNow;
        this.#trace.record(TRACE.grant, at, a.vcpu, a.slot, a.sliceNs, GRANT_VIA[a.via], aux);
        v.lastGeneration = a.generation;
        v.queued = null;
        // The leaving EMT published nothing for it and woke it already.
        if (a.via === "handed") continue;
        v.table.grant(v.index, {
          generation: a.generation,
          slot: a.slot,
          sliceDeadline: a.deadline,
          reserved: a.reserved,
        });
        // Moved to the slot's CPU before the wake-up, which then lands there.
        this.#shim.shim_wake_on(v.emt, pin.length ? pin[a.slot] : -1);
      } else if (a.type === "extend") {
        // The vCPU goes on in guest mode: a new deadline in its grant, its timer moved.
        const t = this.#lastNow;
        v.extendedAt = t;
        const stolenUs = Math.round(a.stolenNs / 1e3);
        this.#trace.record(TRACE.runEnd, t, a.vcpu, a.slot, a.ranNs, RUN_END_EXTEND, stolenUs);
        this.#trace.record(TRACE.grant, t, a.vcpu, a.slot, a.sliceNs, 0, a.reserved ? 1 : 0);
        v.table.extend(v.index, a.deadline);
        this.#shim.shim_extend(v.emt, a.oldDeadline, a.deadline);
      } else if (a.type === "preempt") {
        this.#trace.record(TRACE.preempt, this.#lastNow, a.vcpu, a.slot);
        v.table.revoke(v.index, a.generation);
        this.#shim.shim_poke(v.emt);
      }
    }
  }

  /** Reads every ring and feeds the events to the core. */
  #drain(): void {
    for (const { ids } of this.#vms.values()) {
      for (let i = 0; i < ids.length; i++) this.#drainVcpu(ids[i]);
    }
  }

  /** Feeds the events in one vCPU's ring to the core, in order. */
  #drainVcpu(id: number): void {
    const core = this.#core;
    const ref = this.#vcpus.get(id);
    if (!ref) return;
    const table = ref.table, i = ref.index;
    for (let ev = table.next(i); ev !== null; ev = table.next(i)) {
      // A slot handed to this vCPU by a leaving EMT: that leave is in the leaver's ring (it is
      // posted before the hand-off); it must reach the core first.
      if (ref.queued !== null && ev.generation === ref.queued.generation) {
        this.#drainVcpu(ref.queued.holder);
      }
      const now = this.#now();
      if (
        (ev.type === SCHED_EVENT.sliceEnd || ev.type === SCHED_EVENT.preempted ||
          ev.type === SCHED_EVENT.yield) && ev.generation !== ref.lastGeneration
      ) {
        // Gives back a grant the core already took back (a stale one). The vCPU's newer
        // grant is live: it must not be revoked below.
        continue;
      }
      if (ev.type !== SCHED_EVENT.runnable && ref.lastGeneration) {
        // Whatever the vCPU gives back, its last grant is dead: an EMT that halted while a
        // grant was on its way must not take that grant later (pause, INIT).
        table.revoke(i, ref.lastGeneration);
      }
      const t0 = performance.now();
      const before = core.vcpuState(id);
      const trace = this.#trace;
      if (now - ev.at > CORE_LATE_NS) {
        // Late: the part after the event came while the core slept is its wake-up (the host's);
        // the rest the core was busy with earlier events or the plugin.
        const asleep = ev.at >= this.#sleptFrom ? Math.max(0, this.#sleptTo - ev.at) : 0;
        trace.record(TRACE.coreLate, now, id, -1, now - ev.at, 0, Math.round(asleep / 1e3));
      }
      if (ev.type === SCHED_EVENT.runnable) {
        trace.record(TRACE.wake, ev.at, id, -1, 0, ev.ranNs); // reason: what woke it
      } else if (before?.state === "running") {
        // As the core accounts it: at most the time since its grant or last extension.
        // An EMT that left guest mode just before the core extended its slice (and
        // reported it just after) is dated at the extension: runs never overlap.
        const held = core.heldNs(id, now);
        const ran = Math.min(ev.ranNs, held);
        const at = Math.max(ev.at, ref.extendedAt);
        // Steal before an extension was charged with it: only the part after it counts.
        const stolenUs = Math.round(Math.min(ev.stolenNs, held) / 1e3);
        trace.record(TRACE.runEnd, at, id, before.slot, ran, RUN_END[ev.type], stolenUs);
      } else if (ev.type === SCHED_EVENT.halt) {
        trace.record(TRACE.halt, ev.at, id);
      }
      // When the EMT left guest mode: a vCPU queued ahead for its slot was handed it then.
      const left = Math.min(ev.at, now);
      switch (ev.type) {
        case SCHED_EVENT.runnable: // ranNs carries the wake source here
          this.#apply(core.wake(id, now));
          break;
        case SCHED_EVENT.halt:
          this.#apply(core.halt(id, now, ev.ranNs, ev.stolenNs, left));
          break;
        case SCHED_EVENT.sliceEnd:
          this.#apply(core.sliceEnd(id, now, ev.ranNs, ev.stolenNs, left));
          break;
        case SCHED_EVENT.preempted:
          this.#apply(core.preempted(id, now, ev.ranNs, ev.stolenNs, left));
          break;
        case SCHED_EVENT.yield:
          this.#apply(core.yield(id, now, ev.ranNs, ev.stolenNs, left));
          break;
        case SCHED_EVENT.gone:
          this.#apply(core.removeVcpu(id, now));
          trace.record(TRACE.vcpuRemove, now, id);
          break;
      }
      trace.record(TRACE.decision, now, id, -1, (performance.now() - t0) * 1e6, ev.type - 1);
    }
  }

  /**
   * The loop: doorbell or timer, then drain and advance. While a control message is being
   * handled (a hot-swap awaits its new sandbox) the loop keeps draining but yields to the
   * event loop instead of sleeping in `Atomics.wait`.
   */
  async run(): Promise<void> {
    while (!this.#closed) {
      const seen = Atomics.load(this.#bell, DOORBELL.events);
      this.#drain();
      const t0 = performance.now();
      const timed = this.#core.advance(this.#now());
      if (timed.length) {
        const ns = (performance.now() - t0) * 1e6;
        this.#trace.record(TRACE.decision, this.#lastNow, -1, -1, ns, 6);
        this.#apply(timed);
      }
      if (Atomics.load(this.#bell, DOORBELL.control) !== this.controlHandled) {
        // The event loop delivers and runs them. Sleep in it, never spin: this thread is the
        // highest-priority one of its CPU, and what a control message awaits (a hot-swap's new
        // sandbox Worker starting, its module loading) runs below it, possibly on this CPU
        // only (invariant 7). A timer of 0 ms polled the event loop without sleeping.
        await new Promise<void>((r) => {
          this.controlWake = r;
          setTimeout(r, CONTROL_POLL_MS);
        });
        this.controlWake = null;
        continue;
      }
      const next = this.#core.nextTimerAt();
      const waitMs = next === Infinity ? 1000 : (next - this.#now()) / 1e6;
      if (waitMs > 0) {
        this.#sleptFrom = this.#now();
        Atomics.wait(this.#bell, DOORBELL.events, seen, waitMs);
        this.#sleptTo = this.#now();
      }
    }
  }

  addVm(
    vm: string,
    vcpus: number,
    params: Record<string, number | string | boolean>,
    table: SharedArrayBuffer,
    emtBlocks: SharedArrayBuffer,
  ): void {
    if (this.#vms.has(vm)) throw new Error(`vm ${vm} is already scheduled`);
    const t = new GrantTableCore(table);
    const base = Deno.UnsafePointer.of(emtBlocks)!;
    this.#retained.push(emtBlocks);
    const ids: number[] = [];
    const now = this.#now();
    for (let i = 0; i < vcpus; i++) {
      const id = this.#nextId++;
      ids.push(id);
      const emt = Deno.UnsafePointer.offset(base, i * EMT_BLOCK_SIZE)!;
      this.#vcpus.set(id, {
        vm,
        index: i,
        table: t,
        emt,
        lastGeneration: 0,
        extendedAt: 0,
        emtAddress: Number(Deno.UnsafePointer.value(emt)),
        queued: null,
      });
      this.#trace.nameVcpu({ id, vm, index: i, params: { ...params } });
      this.#trace.record(TRACE.vcpuAdd, now, id, -1, i, 0, this.#trace.intern(vm));
      this.#apply(this.#core.addVcpu({
        id,
        vm,
        index: i,
        vmVcpus: vcpus,
        params,
        state: "halted",
      }, now));
    }
    this.#vms.set(vm, { table: t, ids });
  }

  removeVm(vm: string): void {
    const v = this.#vms.get(vm);
    if (!v) return;
    this.#drain();
    const now = this.#now();
    for (const id of v.ids) {
      if (this.#core.hasVcpu(id)) this.#apply(this.#core.removeVcpu(id, now));
      this.#vcpus.delete(id);
    }
    this.#vms.delete(vm);
  }

  eject(reason: string): void {
    this.#apply(this.#core.eject(reason, this.#now()));
  }

  async swap(spec: PolicySpec): Promise<string> {
    const port = await loadPolicy(spec, this.#init);
    this.#apply(this.#core.swapPolicy(port, this.#now()));
    return this.#core.policyName;
  }

  setParams(target: string, params: Record<string, number | string | boolean>): void {
    this.#apply(this.#core.setParams(target, params, this.#now()));
  }

  stats() {
    const s = this.#core.stats(this.#now());
    return {
      policy: this.#core.policyName,
      slots: this.#init.slots,
      slotBusyNs: s.slots.map((x) => x.busyNs),
      decisions: s.decisions,
      queued: s.queued,
      revoked: s.revoked,
      ejections: s.ejections,
      at: this.#now(),
      vcpus: s.vcpus.flatMap((x) => {
        const ref = this.#vcpus.get(x.id);
        if (!ref) return [];
        return [{
          vm: ref.vm,
          index: ref.index,
          state: x.state,
          slot: x.slot ?? -1,
          runNs: x.runNs,
          stolenNs: x.stolenNs,
          waitNs: x.waitNs,
          grants: x.grants,
          aheadGrants: x.aheadGrants,
          handedGrants: x.handedGrants,
          extensions: x.extensions,
          preemptions: x.preemptions,
          wakes: x.wakes,
          wakeLatencyP50Ns: x.wakeLatencyP50Ns,
          wakeLatencyP99Ns: x.wakeLatencyP99Ns,
        }];
      }),
    };
  }

  trace(clear: boolean) {
    const t = this.#trace.collect({
      slots: this.#init.slots,
      policy: this.#core.policyName,
      ratelimitNs: this.#init.ratelimitNs,
      policyParams: this.#init.policy.params,
    });
    if (clear) this.#trace.clear();
    return t;
  }

  close(): void {
    this.#closed = true;
    Atomics.add(this.#bell, 0, 1);
    Atomics.notify(this.#bell, 0);
    this.#core.close();
    // This thread's end (the Worker's teardown) runs fair-class and unpinned.
    releaseThread(0);
  }
}

async function loadPolicy(spec: PolicySpec, init: CoreInit): Promise<PolicyPort> {
  if (spec.plugin === "builtin:rr") return new LocalPolicy(rr, { name: "rr", params: spec.params });
  // The process sandbox unless a Worker is asked for (docs/scheduler.md says why).
  const create = spec.sandbox === "worker" ? SandboxPolicy.create : ProcessSandboxPolicy.create;
  const port = await create({
    plugin: spec.plugin,
    params: spec.params,
    slots: init.slots,
    maxSliceNs: init.maxSliceNs,
    ratelimitNs: init.ratelimitNs,
    budgetNs: init.budgetNs,
    allowImport: spec.allowImport,
  });
  colocate(port.threadId);
  return port;
}

let thread: CoreThread | undefined;

self.onmessage = async (ev: MessageEvent<CoreRequest>) => {
  const m = ev.data;
  if (m.type === "init") {
    try {
      const shim = openShim(m.shimPath);
      thread = new CoreThread(m, shim, await loadPolicy(m.policy, m));
      post({ type: "ready", policy: thread.policyName });
      thread.run().catch((e) => {
        // The core itself failing is a bug; say so loudly, VMs then stop for lack of grants.
        console.error(`deno-vmm scheduler core: ${(e as Error).stack ?? e}`);
      });
    } catch (e) {
      post({ type: "init-failed", message: (e as Error).message });
    }
    return;
  }
  const t = thread!;
  try {
    switch (m.type) {
      case "add-vm":
        t.addVm(m.vm, m.vcpus, m.params, m.table, m.emtBlocks);
        post({ type: "done", id: m.id });
        break;
      case "remove-vm":
        t.removeVm(m.vm);
        post({ type: "done", id: m.id });
        break;
      case "eject":
        t.eject(m.reason);
        post({ type: "done", id: m.id, policy: t.policyName });
        break;
      case "swap":
        post({ type: "done", id: m.id, policy: await t.swap(m.policy) });
        break;
      case "set-params":
        t.setParams(m.target, m.params);
        post({ type: "done", id: m.id });
        break;
      case "stats":
        post({ type: "done", id: m.id, stats: t.stats() });
        break;
      case "trace": {
        const trace = t.trace(m.clear);
        self.postMessage({ type: "done", id: m.id, trace } satisfies CoreReply, [trace.records]);
        break;
      }
      case "close":
        t.close();
        post({ type: "done", id: m.id });
        break;
    }
  } catch (e) {
    post({ type: "done", id: m.id, error: (e as Error).message });
  } finally {
    t.controlHandled++; // only now may the loop sleep in Atomics.wait again
    t.controlWake?.();
  }
};
