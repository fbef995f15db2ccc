/**
 * What the control API says about VMs and the scheduler: plain JSON objects built from a VM's
 * config, its shim counters, its guest-published stats and the scheduler's statistics. The
 * client (`client.ts`) imports these types, so both ends agree on the shapes.
 *
 * @module
 */
import type { SchedParams } from "../sched/contract.ts";
import type { SchedStats, VcpuSchedStats } from "../sched/runtime_protocol.ts";
import type { EjectInfo } from "../sched/watchdog.ts";
import { exitReasonName } from "../kvm/constants.ts";
import type { Vm, VmExit, VmState } from "../vm/vm.ts";
import { currentSchedParams } from "./params.ts";

/** One VM in `GET /vms`. */
export interface VmSummary {
  /** VM name. */
  name: string;
  /** Lifecycle state. */
  state: VmState;
  /** vCPUs. */
  vcpus: number;
  /** Guest memory, MiB. */
  memoryMiB: number;
  /** Scheduling parameters now (config, then every change through the API). */
  sched: SchedParams;
  /** Guest seconds of all its vCPUs (the shim's clock). */
  cpuSeconds: number;
  /** How it ended, once it has. */
  exit?: VmExit;
}

/** The scheduler's view of one vCPU (from `Scheduler.stats()`). */
export type VcpuSchedView = Omit<VcpuSchedStats, "vm" | "index">;

/** One vCPU in `GET /vms/{name}`. */
export interface VcpuView {
  /** Index in the VM. */
  index: number;
  /** KVM_RUN entries. */
  runs: number;
  /** Guest halts. */
  halts: number;
  /** Wakes received. */
  wakes: number;
  /** Pokes (forced out of guest mode). */
  pokes: number;
  /** ns in guest mode. */
  guestNs: number;
  /** ns halted. */
  haltedNs: number;
  /** ns waiting for a grant (a slot). */
  waitGrantNs: number;
  /** Exits by KVM exit reason name (only reasons seen). */
  exits: Record<string, number>;
  /** The scheduler's view (state, slot, run / wait ns, grants...); null without a scheduler. */
  sched: VcpuSchedView | null;
  /** What the guest workload published (iterations, rounds, misses); null before it did. */
  guest: { iterations: number; rounds: number; misses: number } | null;
}

/** `GET /vms/{name}`. */
export interface VmDetail extends VmSummary {
  /** The guest command line (as configured). */
  cmdline: string;
  /** The kernel (path or URL). */
  kernel: string;
  /** Per vCPU. */
  vcpuStats: VcpuView[];
}

/** `GET /sched`. */
export interface SchedView {
  /** Policy in charge. */
  policy: string;
  /** Slots. */
  slots: number;
  /** Plugin decisions so far. */
  decisions: number;
  /** Ejections so far, oldest first. */
  ejections: EjectInfo[];
  /** Per slot: seconds a vCPU held it. */
  slotBusySeconds: number[];
  /** Most EMTs ever in guest mode at once (never above `slots`). */
  guestModeHighWater: number;
  /** Per vCPU, as the scheduler sees it. */
  vcpus: VcpuSchedStats[];
}

/** Sum of the guest ns of a VM's vCPUs. */
export function vmGuestNs(vm: Vm): number {
  return vm.counters().reduce((s, c) => s + c.nsGuest, 0);
}

/** `GET /vms` entry. */
export function vmSummary(vm: Vm): VmSummary {
  const s: VmSummary = {
    name: vm.name,
    state: vm.state,
    vcpus: vm.config.vcpus,
    memoryMiB: vm.config.memoryBytes / (1024 * 1024),
    sched: currentSchedParams(vm),
    cpuSeconds: vmGuestNs(vm) / 1e9,
  };
  if (vm.exit) s.exit = vm.exit;
  return s;
}

/** `GET /vms/{name}`: the summary plus every vCPU's counters and scheduler view. */
export function vmDetail(vm: Vm, stats: SchedStats | null): VmDetail {
  const guest = vm.stats();
  const vcpuStats = vm.counters().map((c): VcpuView => {
    const exits: Record<string, number> = {};
    c.exits.forEach((n, r) => {
      if (n > 0) exits[exitReasonName(r)] = n;
    });
    const s = stats?.vcpus.find((v) => v.vm === vm.name && v.index === c.vcpu);
    let sched: VcpuSchedView | null = null;
    if (s) {
      const { vm: _vm, index: _index, ...rest } = s;
      sched = rest;
    }
    const g = guest?.vcpus[c.vcpu];
    return {
      index: c.vcpu,
      runs: c.runs,
      halts: c.halts,
      wakes: c.wakes,
      pokes: c.pokes,
      guestNs: c.nsGuest,
      haltedNs: c.nsHalted,
      waitGrantNs: c.nsWaitGrant,
      exits,
      sched,
      guest: g
        ? { iterations: Number(g.iterations), rounds: Number(g.rounds), misses: Number(g.misses) }
        : null,
    };
  });
  return {
    ...vmSummary(vm),
    cmdline: vm.config.cmdline,
    kernel: vm.config.kernel.protocol === "file:"
      ? decodeURIComponent(vm.config.kernel.pathname)
      : vm.config.kernel.href,
    vcpuStats,
  };
}

/** `GET /sched`. */
export function schedView(stats: SchedStats, highWater: number): SchedView {
  return {
    policy: stats.policy,
    slots: stats.slots,
    decisions: stats.decisions,
    ejections: stats.ejections,
    slotBusySeconds: stats.slotBusyNs.map((ns) => ns / 1e9),
    guestModeHighWater: highWater,
    vcpus: stats.vcpus,
  };
}
