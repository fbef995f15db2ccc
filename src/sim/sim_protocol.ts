/**
 * Messages between {@linkcode simulateSandboxed} and the Worker that runs a whole simulation
 * (`sim_worker.ts`).
 *
 * @module
 */
import type { PolicyEvent } from "../sched/contract.ts";
import type { ResolvedSimOptions } from "./run.ts";
import type { SimResult } from "./types.ts";

/** The options as they cross to the Worker: plugins as URLs, no callbacks. */
export type WireSimOptions = Omit<ResolvedSimOptions, "plugin" | "onPolicyEvent"> & {
  plugin: string;
};

/** The start message. */
export interface SimStart {
  /** What to simulate. */
  options: WireSimOptions;
  /** The watch words (`watched_policy.ts`, `WATCH`). */
  watch: SharedArrayBuffer;
  /** Whether to send the plugins' policy events back with the result. */
  collectEvents: boolean;
}

/** The Worker's one answer. */
export type SimWorkerReply =
  | { type: "result"; result: SimResult; events: [PolicyEvent, number][] }
  | { type: "load-error"; plugin: string; message: string }
  | { type: "error"; message: string };
