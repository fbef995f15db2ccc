/**
 * Round-robin: the built-in fallback policy.
 *
 * Every runnable vCPU waits in one FIFO queue. When a slot frees, the vCPU at the head of the
 * queue gets it for a fixed slice (`slice_ms`, default 10 ms). A vCPU whose slice ends (or that
 * is preempted or yields) goes to the back of the queue; a vCPU that halts leaves the queue; a
 * vCPU that wakes joins the back of the queue and never preempts anyone. When its slice ends and
 * the queue is empty, the running vCPU simply goes on (`extendSlice`).
 *
 * It ignores weights, caps and VMs: it is the policy the core falls back to when a plugin is
 * ejected, so it must be obviously correct and starvation-free: with `n` runnable vCPUs and `s`
 * slots, a vCPU waits at most about `ceil(n / s) × slice`.
 *
 * Parameters: `slice_ms` (number, default 10).
 *
 * @module
 */
import type { SchedContext, SchedulerPlugin, VcpuId, VcpuInfo } from "../mod.ts";

/** The FIFO of runnable vCPUs that are not running. */
let queue: VcpuId[] = [];
/** The slice every grant gets. */
let sliceNs = 10_000_000;

function enqueue(vcpu: VcpuId): void {
  if (!queue.includes(vcpu)) queue.push(vcpu);
}

function dequeue(vcpu: VcpuId): void {
  const i = queue.indexOf(vcpu);
  if (i >= 0) queue.splice(i, 1);
}

/** The round-robin policy. */
export default {
  name: "rr",

  init(ctx: SchedContext) {
    queue = [];
    const ms = Number(ctx.params.slice_ms ?? 10);
    sliceNs = Math.min(ctx.maxSliceNs, Math.max(1, Math.round(ms * 1e6)));
  },

  addVcpu(info: VcpuInfo) {
    if (info.state === "runnable") enqueue(info.id);
  },

  removeVcpu(id: VcpuId) {
    dequeue(id);
  },

  pickNext() {
    const vcpu = queue.shift();
    return vcpu === undefined ? null : { vcpu, sliceNs };
  },

  onHalt(vcpu: VcpuId) {
    dequeue(vcpu);
  },

  onWake(vcpu: VcpuId) {
    enqueue(vcpu);
  },

  onDeschedule(vcpu: VcpuId) {
    enqueue(vcpu);
  },

  /** The core asks only when nobody waits: the running vCPU goes on for another slice. */
  extendSlice() {
    return sliceNs;
  },
} satisfies SchedulerPlugin;
