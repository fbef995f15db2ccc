/**
 * deno-vmm: a virtual machine monitor for Linux KVM whose vCPU scheduler is a plugin.
 *
 * Each vCPU's emulation thread (EMT) runs in its own Deno Worker and drives KVM through FFI
 * and a small C halt/wake shim (`ffi/shim.c`, compiled on first use).
 *
 * ```ts
 * import { Vmm } from "@deno-vmm/deno-vmm";
 *
 * const vmm = await Vmm.create();
 * const vm = await vmm.createVm({ name: "a", vcpus: 2, cmdline: "workload=hello" });
 * await vm.start();
 * const exit = await vm.wait(); // { kind: "exit", status: 0 }
 * console.log(vm.consoleText());
 * await vmm.close();
 * ```
 *
 * The package's other entry points: `@deno-vmm/deno-vmm/plugin`, the scheduler plugin
 * contract alone (what a policy module imports, with `import type`), and
 * `@deno-vmm/deno-vmm/plugins/rr`, `.../credit`, `.../credit2`, `.../rtds`, `.../gang`, the
 * built-in policies, each a complete plugin to start from.
 *
 * Replay a recorded run under another policy ({@linkcode replayTrace}, the CLI's
 * `trace replay`):
 *
 * ```ts ignore
 * import { readTraceFile, renderReplay, replayTrace } from "@deno-vmm/deno-vmm";
 *
 * const trace = await readTraceFile("out.json"); // written by run/scenario --trace
 * const r = await replayTrace({ trace, plugin: "plugins/credit2.ts" });
 * console.log(renderReplay(r)); // per VM share and wake latency, recorded → replayed
 * ```
 *
 * Run as a program it is the CLI (`deno-vmm --help`). Installed as a command:
 * `deno install -g -A --unstable-worker-options -n deno-vmm <url>/mod.ts`; the scheduler's
 * sandbox needs `--unstable-worker-options` (Worker permissions).
 *
 * @module
 */
export { Vmm, type VmmOptions } from "./src/vmm.ts";
export { type ConsoleLine, type VcpuCounters, Vm, type VmExit, type VmState } from "./src/vm/vm.ts";
export { ConfigError, type ResolvedVmConfig, type VmConfig } from "./src/vm/config.ts";
export { ElfError } from "./src/vm/elf.ts";
export type { GuestStats, VcpuStats } from "./src/vm/stats.ts";
export type { EmtCounters } from "./src/emt/shim_layout.ts";
export type { UnhandledAccessPolicy, VcpuFault } from "./src/emt/protocol.ts";
export { KvmUnavailableError } from "./src/kvm/kvm.ts";
export { ShimBuildError } from "./ffi/shim.ts";
export { guestKernel, GuestKernelError, type GuestKernelOptions } from "./src/vm/guest_kernel.ts";
export { VERSION } from "./src/version.ts";
// The plugin contract (types and defineScheduler), as `./plugin` exports it alone.
export * from "./plugin.ts";
export {
  Scheduler,
  SchedulerError,
  type SchedulerOptions,
  type SchedVm,
} from "./src/sched/scheduler.ts";
export type { EchoLoadOptions, EchoResult } from "./src/devices/echo.ts";
export type { TraceData, TraceVcpu } from "./src/trace/events.ts";
export { readTraceFile } from "./src/trace/write.ts";
export type { Ejection, SlotSummary, TraceSummary, VcpuSummary } from "./src/trace/summary.ts";
export {
  renderReplay,
  type ReplayOptions,
  type ReplayResult,
  replayTrace,
  type ReplayVmComparison,
} from "./src/trace/replay.ts";
export type { DemandNotes, HostCosts, TraceDemand, VmDemand } from "./src/trace/demand.ts";
export type {
  AttackerWorkload,
  CostSeries,
  EchoWorkload,
  IpiWorkload,
  LockWorkload,
  PeriodicWorkload,
  ReplayBurst,
  ReplayWake,
  ReplayWorkload,
  SpinWorkload,
  Workload,
} from "./src/sim/types.ts";
export { type ApiServer, ApiSocketError, startApiServer } from "./src/api/server.ts";
export {
  ApiClient,
  ApiRequestError,
  type EjectResult,
  type SchedView,
  type SetParamsResult,
  type SwapResult,
  type TargetState,
  type VmDetail,
  type VmSummary,
} from "./src/api/client.ts";
export type { VcpuSchedView, VcpuView } from "./src/api/views.ts";
export { startTop, type Top, type TopOptions } from "./src/cli/top.ts";
// `compare`: plugins beside the built-ins on the standard scenarios, judged and charted.
export {
  BUILTIN_POLICIES,
  compare,
  type CompareData,
  type CompareOptions,
  type ComparePlugin,
  type CompareRun,
  DEFAULT_SEEDS,
  STANDARD_SCENARIOS,
} from "./src/compare/run.ts";
export { type CompareReport, compareReport } from "./src/compare/report.ts";
export type { GoalCheck, PluginVerdict, ScenarioVerdict } from "./src/compare/verdict.ts";
export type { Cdf } from "./src/compare/cdf.ts";
export type { ScenarioGoal } from "./src/scenario/goal.ts";
export type { Scenario, ScenarioVm, ScenarioWorkload } from "./src/scenario/scenario.ts";
export type { ScenarioResult, VmOutcome } from "./src/scenario/result.ts";
export type { SchedStats, VcpuSchedStats } from "./src/sched/runtime_protocol.ts";
export type { EjectInfo, EjectReason } from "./src/sched/watchdog.ts";

if (import.meta.main) {
  const { main } = await import("./src/cli/main.ts");
  Deno.exit(await main(Deno.args));
}
