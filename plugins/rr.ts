/**
 * Round-robin: the built-in fallback policy.
 *
 * Every runnable vCPU waits in one FIFO queue. When a slot frees, the vCPU at the head of the
 * queue gets it for a fixed slice (`slice_ms`, default 10 ms). A vCPU whose slice ends (or that
 * is preempted or yields) goes to the back of the queue; a vCPU that halts leaves the queue; a
 * vCPU that wakes joins the back of the queue.
 *
 * When its slice ends and the queue is empty, the running vCPU simply goes on (`extendSlice`),
 * and for as long as the core allows (`maxSliceNs`, 100 ms): with nobody to take turns with,
 * asking again every slice would only cost a wake-up of the scheduler each time (about 1 % of
 * the CPU at 10 ms slices). It has had its turn, so a vCPU that wakes meanwhile preempts it at
 * once, unless a slot is idle. That is the only preemption: a vCPU within its slice is never
 * preempted. (Linux's NO_HZ_FULL does the same for a CPU with one task: no tick until a second
 * one arrives.)
 *
 * While a slot is busy and vCPUs wait, it names the slot's next vCPU ahead (`queueNext`): the
 * head of the queue, which is what `pickNext` would take when the slot frees, whatever the
 * leaving vCPU does (it goes to the back, or leaves the queue). The leaving EMT then hands the
 * slot over itself. A revoked choice goes back to the head.
 *
 * It ignores weights, caps and VMs: it is the policy the core falls back to when a plugin is
 * ejected, so it must be obviously correct and starvation-free: with `n` runnable vCPUs and `s`
 * slots, a vCPU waits at most about `ceil(n / s) × slice`.
 *
 * Parameters: `slice_ms` (number, default 10).
 *
 * @module
 */
import type { SchedContext, SchedulerPlugin, SlotId, VcpuId, VcpuInfo } from "../mod.ts";

/** The FIFO of runnable vCPUs that are not running. */
let queue: VcpuId[] = [];
/** The slice every grant gets. */
let sliceNs = 10_000_000;
/** How long a vCPU goes on past its slice when nobody waits. */
let extensionNs = 100_000_000;
/** The vCPU running on each slot, or undefined. */
let running: (VcpuId | undefined)[] = [];
/** Slots whose vCPU runs past its slice (it was extended); any waker may take them. */
const overtime = new Set<SlotId>();
/** The vCPU queued ahead on each slot (`queueNext`), or undefined. */
let next: (VcpuId | undefined)[] = [];

/** `vcpu` left its slot (descheduled, halted or removed): the vCPU queued there takes it. */
function leave(vcpu: VcpuId): void {
  const slot = running.indexOf(vcpu);
  if (slot >= 0) {
    running[slot] = next[slot];
    next[slot] = undefined;
    overtime.delete(slot);
  }
}

/** `vcpu`, queued ahead, halted or left before its hand-off: it is no longer queued. */
function unqueue(vcpu: VcpuId): void {
  const slot = next.indexOf(vcpu);
  if (slot >= 0) next[slot] = undefined;
}

function enqueue(vcpu: VcpuId): void {
  if (!queue.includes(vcpu)) queue.push(vcpu);
}

function dequeue(vcpu: VcpuId): void {
  const i = queue.indexOf(vcpu);
  if (i >= 0) queue.splice(i, 1);
}

/** The round-robin policy. */
const rr: SchedulerPlugin = {
  name: "rr",

  init(ctx: SchedContext) {
    queue = [];
    const ms = Number(ctx.params.slice_ms ?? 10);
    sliceNs = Math.min(ctx.maxSliceNs, Math.max(1, Math.round(ms * 1e6)));
    extensionNs = ctx.maxSliceNs;
    running = new Array(ctx.slots).fill(undefined);
    next = new Array(ctx.slots).fill(undefined);
    overtime.clear();
  },

  addVcpu(info: VcpuInfo) {
    if (info.state === "runnable") enqueue(info.id);
  },

  removeVcpu(id: VcpuId) {
    dequeue(id);
    unqueue(id);
    leave(id);
  },

  pickNext(slot: SlotId) {
    const vcpu = queue.shift();
    running[slot] = vcpu;
    overtime.delete(slot);
    return vcpu === undefined ? null : { vcpu, sliceNs };
  },

  onHalt(vcpu: VcpuId) {
    dequeue(vcpu);
    unqueue(vcpu);
    leave(vcpu);
  },

  /** The next in line, decided while the slot is busy. */
  queueNext(slot: SlotId) {
    const vcpu = queue.shift();
    if (vcpu === undefined) return null;
    next[slot] = vcpu;
    return { vcpu, sliceNs };
  },

  /** Joins the queue; takes a slot whose vCPU is past its slice, unless one is idle. */
  onWake(vcpu: VcpuId) {
    enqueue(vcpu);
    if (running.includes(undefined)) return null;
    const [slot] = overtime;
    if (slot === undefined) return null;
    overtime.delete(slot);
    return slot;
  },

  onDeschedule(vcpu: VcpuId, _slot: SlotId, _ranNs: number, reason) {
    if (reason === "revoked") {
      // Queued ahead and taken back before it ran: the head of the line again.
      unqueue(vcpu);
      const slot = running.indexOf(vcpu); // its hand-off was cancelled after all
      if (slot >= 0) running[slot] = undefined;
      if (!queue.includes(vcpu)) queue.unshift(vcpu);
      return;
    }
    leave(vcpu);
    enqueue(vcpu);
  },

  /** The core asks only when nobody waits: the running vCPU goes on, past its slice. */
  extendSlice(_vcpu: VcpuId, slot: SlotId) {
    overtime.add(slot);
    return extensionNs;
  },
};
export default rr;
