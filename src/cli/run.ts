/**
 * `deno run -A mod.ts run`: boot VMs from `--vm` specs or a `--config` file, print their
 * consoles prefixed with the VM name, and exit with their status.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { ConfigError, resolveVmConfig, type VmConfig } from "../vm/config.ts";
import type { Vm, VmExit } from "../vm/vm.ts";
import { Vmm } from "../vmm.ts";
import { parseVmSpec } from "./vm_spec.ts";
import {
  SCHED_FLAGS,
  SCHED_FLAGS_HELP,
  schedulerFromConfig,
  schedulerFromFlags,
} from "./sched_flags.ts";
import type { SchedulerOptions } from "../sched/scheduler.ts";
import { writeTraceFile } from "../trace/write.ts";
import { startApiServer } from "../api/server.ts";
import { startTop } from "./top.ts";
import { UsageError } from "./usage.ts";

/** Help text of `run`. */
export const RUN_HELP = `Usage: deno run -A mod.ts run [options]

Boot one or more VMs and print their consoles, each line prefixed with its VM's name.
Exits 0 when every VM's guest exited with status 0, 1 otherwise, 2 for bad usage.

Options:
  --vm SPEC           a VM, as comma-separated key=value pairs (repeatable):
                        name=NAME        (default vm0, vm1, ...)
                        vcpus=N          (default 1)
                        memory=MIB       (default 64)
                        kernel=PATH|URL  (default the built-in kernel, built on first use)
                        cmdline=TEXT     (default workload=hello; may contain '=' and spaces)
                        unhandled=ignore|stop  (unclaimed port/MMIO accesses)
                        haltpoll=US      (halt polling before sleeping, default 0)
                        weight=W, cap=PCT, period_ms=MS, budget_ms=MS, extratime=BOOL
                                         (scheduling parameters for the policy)
  --config FILE       a JSON file: {"vms": [{"name": "a", "vcpus": 2, "cmdline": "..."}],
                        "scheduler": {"plugin": "plugins/credit.ts", "params": {}}}
${SCHED_FLAGS_HELP}
  --timeout SECONDS   stop every VM still running after this long
  --trace FILE        write the scheduler's trace as Perfetto JSON (needs --sched); open it at
                        https://ui.perfetto.dev or draw it: trace timeline FILE --svg OUT.svg
  --api PATH          serve the control API on this Unix socket (mode 0600) while the VMs
                        run; drive it with: deno run -A mod.ts ctl --api PATH --help
  --top               a live view of every VM and vCPU (CPU %, exits/s, scheduler state),
                        redrawn each second; console lines are not printed on a terminal
  -q, --quiet         do not print console lines (only the summary)
  -h, --help          this text

Examples:
  deno run -A mod.ts run --vm name=a,vcpus=2,cmdline=workload=hello
  deno run -A mod.ts run --sched plugins/credit.ts --slots 1 \\
    --vm name=a,weight=512,cmdline="workload=spin seconds=2" \\
    --vm name=b,cmdline="workload=spin seconds=2"
`;

/** What a config file holds. */
export interface VmsFile {
  /** The VMs. */
  vms: VmConfig[];
  /** The scheduler, if the file names one. */
  scheduler?: SchedulerOptions;
}

/** Reads `{ "vms": [...], "scheduler": {...} }` (or a bare array of VMs) from a JSON file. */
export async function readVmsConfig(path: string): Promise<VmsFile> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new ConfigError("--config", `cannot read ${path}: ${(e as Error).message}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(path, `not valid JSON: ${(e as Error).message}`);
  }
  const vms = Array.isArray(data) ? data : (data as { vms?: unknown })?.vms;
  if (!Array.isArray(vms) || vms.length === 0) {
    throw new ConfigError(path, `expected {"vms": [ ... ]} with at least one VM`);
  }
  if (!Array.isArray(data)) {
    for (const k of Object.keys(data as object)) {
      if (k !== "vms" && k !== "scheduler") {
        throw new ConfigError(`${path}: ${k}`, `unknown key (known: vms, scheduler)`);
      }
    }
  }
  const scheduler = Array.isArray(data)
    ? undefined
    : schedulerFromConfig((data as { scheduler?: unknown }).scheduler, `${path}: scheduler`);
  // Every VM is checked before any starts, and an error names the file and the VM's index.
  for (const [i, vm] of vms.entries()) await resolveVmConfig(vm, `${path}: vms[${i}]`);
  return { vms: vms as VmConfig[], scheduler };
}

function describe(exit: VmExit): string {
  if (exit.kind === "exit") return `exit status ${exit.status}`;
  if (exit.kind === "fault") return `fault: ${exit.fault?.message}`;
  return "stopped";
}

/** Runs the `run` command; returns the process exit status. */
export async function runCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      vm: { type: "string", multiple: true },
      config: { type: "string" },
      timeout: { type: "string" },
      quiet: { type: "boolean", short: "q" },
      help: { type: "boolean", short: "h" },
      trace: { type: "string" },
      api: { type: "string" },
      top: { type: "boolean" },
      ...SCHED_FLAGS,
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    console.log(RUN_HELP);
    return 0;
  }
  const configs: VmConfig[] = [];
  let fileScheduler: SchedulerOptions | undefined;
  if (values.config) {
    const file = await readVmsConfig(values.config);
    configs.push(...file.vms);
    fileScheduler = file.scheduler;
  }
  const scheduler = schedulerFromFlags(values, fileScheduler);
  if (values.trace !== undefined && !scheduler) {
    throw new UsageError("--trace needs --sched PLUGIN");
  }
  (values.vm ?? []).forEach((spec, i) => configs.push(parseVmSpec(spec, configs.length + i)));
  if (configs.length === 0) throw new UsageError("no VM given: use --vm SPEC or --config FILE");
  let timeoutMs: number | undefined;
  if (values.timeout !== undefined) {
    const t = Number(values.timeout);
    if (!(t > 0)) throw new UsageError(`--timeout must be a positive number of seconds`);
    timeoutMs = t * 1000;
  }
  const enc = new TextEncoder();
  const quiet = values.quiet || (values.top && Deno.stdout.isTerminal());
  const vmm = await Vmm.create({
    onConsole: quiet
      ? undefined
      : (l) => Deno.stdout.writeSync(enc.encode(`[${l.vm}] ${l.line}\n`)),
    onLog: (m) => Deno.stderr.writeSync(enc.encode(`${m}\n`)),
    scheduler: scheduler && {
      ...scheduler,
      onEject: (info, fallback) =>
        Deno.stderr.writeSync(
          enc.encode(
            `scheduler: ${info.plugin} ejected (${info.reason}: ${info.detail}); ` +
              `${fallback} takes over\n`,
          ),
        ),
    },
  });
  try {
    const vms: Vm[] = [];
    for (const c of configs) vms.push(await vmm.createVm(c));
    const api = values.api !== undefined ? await startApiServer(vmm, values.api) : undefined;
    const top = values.top ? startTop(vmm) : undefined;
    const started = performance.now();
    let exits: VmExit[];
    try {
      await Promise.all(vms.map((vm) => vm.start()));
      let timer: ReturnType<typeof setTimeout> | undefined;
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => vms.forEach((vm) => vm.stop()), timeoutMs);
      }
      exits = await Promise.all(vms.map((vm) => vm.wait()));
      clearTimeout(timer);
    } finally {
      await top?.stop();
      await api?.close();
    }
    if (values.trace !== undefined) {
      await writeTraceFile(values.trace, await vmm.scheduler!.trace());
      console.error(`trace written to ${values.trace}`);
    }
    const secs = ((performance.now() - started) / 1000).toFixed(2);
    let ok = true;
    exits.forEach((exit, i) => {
      console.error(`vm ${vms[i].name}: ${describe(exit)} (${secs} s)`);
      if (exit.kind !== "exit" || exit.status !== 0) ok = false;
    });
    return ok ? 0 : 1;
  } finally {
    await vmm.close();
  }
}
