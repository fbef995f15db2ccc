/**
 * The command line: `deno run -A mod.ts <command> [options]`.
 *
 * @module
 */
import { ConfigError } from "../vm/config.ts";
import { ElfError } from "../vm/elf.ts";
import { SchedulerError } from "../sched/scheduler.ts";
import { demoCommand } from "./demo.ts";
import { runCommand } from "./run.ts";
import { scenarioCommand } from "./scenario.ts";
import { traceCommand } from "./trace.ts";
import { ctlCommand } from "./ctl.ts";
import { ApiSocketError } from "../api/server.ts";
import { simCommand } from "./sim.ts";
import { newPluginCommand } from "./new_plugin.ts";
import { compareCommand } from "./compare.ts";
import { EXIT_USAGE, UsageError } from "./usage.ts";
import { VERSION } from "../version.ts";

/** Top-level help. */
export const MAIN_HELP = `deno-vmm: a KVM virtual machine monitor whose vCPU scheduler is a plugin.

Usage: deno run -A mod.ts <command> [options]
       deno-vmm <command> [options]          (installed: deno task install, or README's Install)

Commands:
  run       boot VMs and print their consoles    (run --help)
  demo      an echo VM and two weighted hogs on one slot under credit, live
  scenario  run a scenario file on KVM or in the simulator (scenario --help)
  sim       run a scheduler plugin in the simulator on a scenario (sim --help)
  trace     pictures and reports of a trace file (trace --help)
  ctl       control a running VMM through its API socket (ctl --help)
  new-plugin  write a plugin skeleton and its test, both passing (new-plugin --help)
  compare   your plugin beside the built-ins on the standard scenarios: verdicts, HTML report

Every command takes --help. deno-vmm --version prints the version.
`;

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  run: runCommand,
  demo: demoCommand,
  scenario: scenarioCommand,
  trace: traceCommand,
  ctl: ctlCommand,
  sim: simCommand,
  "new-plugin": newPluginCommand,
  compare: compareCommand,
};

/** Runs the CLI with `args`; returns the exit status (2 for usage and config errors). */
export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  if (command === undefined || command === "-h" || command === "--help" || command === "help") {
    console.log(MAIN_HELP);
    return command === undefined ? EXIT_USAGE : 0;
  }
  if (command === "--version" || command === "-V" || command === "version") {
    console.log(`deno-vmm ${VERSION}`);
    return 0;
  }
  const run = COMMANDS[command];
  if (!run) {
    console.error(`deno-vmm: unknown command '${command}'\n\n${MAIN_HELP}`);
    return EXIT_USAGE;
  }
  try {
    return await run(rest);
  } catch (e) {
    const err = e as Error & { code?: string };
    const usage = e instanceof UsageError || e instanceof ConfigError ||
      e instanceof ElfError || e instanceof SchedulerError || e instanceof ApiSocketError ||
      (err.code?.startsWith("ERR_PARSE_ARGS") ?? false);
    console.error(`deno-vmm ${command}: ${err.message}`);
    return usage ? EXIT_USAGE : 1;
  }
}
