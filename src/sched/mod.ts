/**
 * The vCPU scheduler's pure part, in one import: the core state machine, the policy ports
 * (in-process and sandboxed), the watchdog's types, the plugin loader's checks and the
 * latency histogram. The plugin contract itself is `contract.ts` (re-exported by `mod.ts`).
 *
 * @module
 */
export {
  type CoreStats,
  type GrantAction,
  type NewVcpu,
  type PreemptAction,
  type SchedAction,
  SchedCore,
  type SchedCoreOptions,
  type SlotStats,
  type VcpuState,
  type VcpuStats,
} from "./core.ts";
export {
  LocalPolicy,
  type LocalPolicyOptions,
  type PolicyPort,
  type PortInit,
} from "./policy_port.ts";
export { resolvePluginUrl, type SandboxOptions, SandboxPolicy } from "./sandbox.ts";
export {
  DEFAULT_BUDGET_NS,
  DEFAULT_STARVATION_NS,
  type EjectInfo,
  type EjectReason,
  PolicyFault,
  ROUNDS_PER_SQRT_SLOT,
  STARVATION_CAP_NS,
  type StarvationBound,
  type WaitingVcpu,
  Watchdog,
  type WatchdogOptions,
} from "./watchdog.ts";
export { pluginFromModule, PluginLoadError } from "./load.ts";
export { Histogram, type LatencySummary } from "./histogram.ts";
export * from "./contract.ts";
