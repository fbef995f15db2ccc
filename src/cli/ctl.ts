/**
 * `deno run -A mod.ts ctl --api PATH <command>`: talk to a running VMM's control API (started
 * with `run --api PATH`), in the spirit of Xen's `xl`: list, show, pause, resume and stop VMs,
 * read the scheduler, set weights and caps (`sched-credit`) or periods and budgets
 * (`sched-rtds`), hot-swap or eject the policy, read the metrics.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { ApiClient, ApiRequestError, type VmDetail, type VmSummary } from "../api/client.ts";
import type { SchedParams } from "../sched/contract.ts";
import { resolvePlugin } from "../sched/scheduler.ts";
import { EXIT_USAGE, UsageError } from "./usage.ts";
import { parseSchedParams } from "./vm_spec.ts";

/** Help text of `ctl`. */
export const CTL_HELP = `Usage: deno run -A mod.ts ctl [--api PATH] <command> [options]

Control a running VMM through its API socket (run --api PATH). PATH defaults to
$DENO_VMM_API.

Commands:
  list                          the VMs: state, vCPUs, memory, CPU seconds, sched params
  show VM                       one VM and every vCPU (scheduler state, slot, time, exits)
  pause VM | resume VM | stop VM
  sched                         the scheduler: policy, slots, busy time, every vCPU
  sched-credit [-d VM] [-w WEIGHT] [-c CAP]
                                weight (1..65535) and cap (% of one slot, 0 = none) of a VM,
                                as 'xl sched-credit'; without -w/-c print them
  sched-credit -s [-t TSLICE_MS] [-r RATELIMIT_US]
                                policy-wide credit parameters
  sched-rtds [-d VM] [-p PERIOD_MS] [-b BUDGET_MS] [-e 0|1]
                                RTDS period, budget (milliseconds; xl takes µs) and
                                extratime; without -p/-b/-e print them
  policy PLUGIN [--sched-param K=V ...]
                                hot-swap the policy (path or URL; no VM stops)
  eject [REASON]                eject the policy plugin now; the built-in fallback takes over
  metrics                       the Prometheus metrics text

Options:
  --api PATH     the API socket (default $DENO_VMM_API)
  --json         print the server's JSON instead of tables
  -h, --help     this text

Errors from the server are printed and exit 1; usage errors exit 2.

Examples:
  deno run -A mod.ts ctl --api /tmp/vmm.sock list
  deno run -A mod.ts ctl --api /tmp/vmm.sock sched-credit -d a -w 512 -c 25
  deno run -A mod.ts ctl --api /tmp/vmm.sock policy plugins/credit2.ts
`;

const OPTIONS = {
  api: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  domain: { type: "string", short: "d" },
  weight: { type: "string", short: "w" },
  cap: { type: "string", short: "c" },
  schedparam: { type: "boolean", short: "s" },
  tslice: { type: "string", short: "t" },
  ratelimit: { type: "string", short: "r" },
  period: { type: "string", short: "p" },
  budget: { type: "string", short: "b" },
  extratime: { type: "string", short: "e" },
  reason: { type: "string" },
  "sched-param": { type: "string", multiple: true },
} as const;

type Values = {
  [K in keyof typeof OPTIONS]?: typeof OPTIONS[K] extends { multiple: true } ? string[]
    : typeof OPTIONS[K] extends { type: "boolean" } ? boolean
    : string;
};

/** Options each command accepts besides `--api`, `--json` and `--help`. */
const COMMAND_OPTIONS: Record<string, (keyof Values)[]> = {
  list: [],
  show: [],
  pause: [],
  resume: [],
  stop: [],
  sched: [],
  "sched-credit": ["domain", "weight", "cap", "schedparam", "tslice", "ratelimit"],
  "sched-rtds": ["domain", "period", "budget", "extratime"],
  policy: ["sched-param"],
  eject: ["reason"],
  metrics: [],
};

const FLAG_NAMES: Record<string, string> = {
  domain: "-d",
  weight: "-w",
  cap: "-c",
  schedparam: "-s",
  tslice: "-t",
  ratelimit: "-r",
  period: "-p",
  budget: "-b",
  extratime: "-e",
  reason: "--reason",
  "sched-param": "--sched-param",
};

function number(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n)) {
    throw new UsageError(`${flag} must be a number, got '${v}'`);
  }
  return n;
}

/** Lays out rows as left-aligned columns. */
function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join("\n");
}

function paramsText(p: SchedParams): string {
  const s = Object.entries(p).map(([k, v]) => `${k}=${v}`).join(",");
  return s || "-";
}

function listText(vms: VmSummary[]): string {
  if (vms.length === 0) return "no VMs";
  return table([
    ["NAME", "STATE", "VCPUS", "MEM(MiB)", "CPU(s)", "SCHED"],
    ...vms.map((v) => [
      v.name,
      v.state,
      String(v.vcpus),
      String(v.memoryMiB),
      v.cpuSeconds.toFixed(2),
      paramsText(v.sched),
    ]),
  ]);
}

function showText(vm: VmDetail): string {
  const exit = vm.exit
    ? `\nexit:     ${
      vm.exit.kind === "exit"
        ? `status ${vm.exit.status}`
        : vm.exit.kind === "fault"
        ? `fault: ${vm.exit.fault?.message}`
        : "stopped"
    }`
    : "";
  const head = `name:     ${vm.name}\nstate:    ${vm.state}\nvcpus:    ${vm.vcpus}\n` +
    `memory:   ${vm.memoryMiB} MiB\nkernel:   ${vm.kernel}\ncmdline:  ${vm.cmdline}\n` +
    `sched:    ${paramsText(vm.sched)}\ncpu:      ${vm.cpuSeconds.toFixed(3)} s${exit}`;
  const rows = [[
    "VCPU",
    "STATE",
    "SLOT",
    "GUEST(s)",
    "HALTED(s)",
    "WAIT(s)",
    "GRANTS",
    "PREEMPT",
    "WAKE-P99(us)",
    "HALTS",
    "WAKES",
    "POKES",
    "EXITS",
  ]];
  for (const c of vm.vcpuStats) {
    const exits = Object.entries(c.exits).sort((a, b) => b[1] - a[1])
      .map(([r, n]) => `${r}:${n}`).join(" ");
    rows.push([
      String(c.index),
      c.sched?.state ?? "-",
      c.sched && c.sched.slot >= 0 ? String(c.sched.slot) : "-",
      (c.guestNs / 1e9).toFixed(3),
      (c.haltedNs / 1e9).toFixed(3),
      (c.waitGrantNs / 1e9).toFixed(3),
      c.sched ? String(c.sched.grants) : "-",
      c.sched ? String(c.sched.preemptions) : "-",
      c.sched ? (c.sched.wakeLatencyP99Ns / 1e3).toFixed(1) : "-",
      String(c.halts),
      String(c.wakes),
      String(c.pokes),
      exits || "-",
    ]);
  }
  return `${head}\n\n${table(rows)}`;
}

async function schedText(api: ApiClient): Promise<string> {
  const s = await api.getSched();
  const ej = s.ejections.map((e) => `  ${e.plugin}: ${e.reason} (${e.detail})`).join("\n");
  const head = `policy:     ${s.policy}\nslots:      ${s.slots}\n` +
    `decisions:  ${s.decisions}\nhigh-water: ${s.guestModeHighWater} EMTs in guest mode\n` +
    `slot busy:  ${s.slotBusySeconds.map((x, i) => `${i}:${x.toFixed(3)}s`).join(" ")}\n` +
    `ejections:  ${s.ejections.length}${ej ? `\n${ej}` : ""}`;
  if (s.vcpus.length === 0) return head;
  const rows = [[
    "VM",
    "VCPU",
    "STATE",
    "SLOT",
    "RUN(s)",
    "WAIT(s)",
    "GRANTS",
    "PREEMPT",
    "WAKES",
    "WAKE P50(us)",
  ]];
  for (const v of s.vcpus) {
    rows.push([
      v.vm,
      String(v.index),
      v.state,
      v.slot >= 0 ? String(v.slot) : "-",
      (v.runNs / 1e9).toFixed(3),
      (v.waitNs / 1e9).toFixed(3),
      String(v.grants),
      String(v.preemptions),
      String(v.wakes),
      (v.wakeLatencyP50Ns / 1e3).toFixed(1),
    ]);
  }
  return `${head}\n\n${table(rows)}`;
}

function schedParamRows(vms: VmSummary[], keys: string[], titles: string[]): string {
  return table([
    ["NAME", ...titles],
    ...vms.map((
      v,
    ) => [v.name, ...keys.map((k) => v.sched[k] === undefined ? "-" : String(v.sched[k]))]),
  ]);
}

async function schedCredit(api: ApiClient, v: Values, json: boolean): Promise<string> {
  if (v.schedparam) {
    if (v.domain || v.weight || v.cap) throw new UsageError("-s does not take -d, -w or -c");
    const p: SchedParams = {};
    const t = number("-t", v.tslice), r = number("-r", v.ratelimit);
    if (t !== undefined) p.tslice_ms = t;
    if (r !== undefined) p.ratelimit_us = r;
    if (Object.keys(p).length === 0) throw new UsageError("-s needs -t TSLICE_MS or -r US");
    const res = await api.setSchedParams("*", p);
    return json ? JSON.stringify(res, null, 2) : `${res.policy}: ${paramsText(res.params)}`;
  }
  if (v.tslice || v.ratelimit) throw new UsageError("-t and -r go with -s");
  const p: SchedParams = {};
  const w = number("-w", v.weight), c = number("-c", v.cap);
  if (w !== undefined) p.weight = w;
  if (c !== undefined) p.cap = c;
  return await schedSet(api, v.domain, p, json, ["weight", "cap"], ["WEIGHT", "CAP"]);
}

async function schedRtds(api: ApiClient, v: Values, json: boolean): Promise<string> {
  const p: SchedParams = {};
  const period = number("-p", v.period), budget = number("-b", v.budget);
  if (period !== undefined) p.period_ms = period;
  if (budget !== undefined) p.budget_ms = budget;
  if (v.extratime !== undefined) {
    if (v.extratime !== "0" && v.extratime !== "1") {
      throw new UsageError(`-e must be 0 or 1, got '${v.extratime}'`);
    }
    p.extratime = v.extratime === "1";
  }
  return await schedSet(
    api,
    v.domain,
    p,
    json,
    ["period_ms", "budget_ms", "extratime"],
    ["PERIOD(ms)", "BUDGET(ms)", "EXTRATIME"],
  );
}

/** Sets `p` on `domain` if there is anything to set, then prints the parameters, as xl does. */
async function schedSet(
  api: ApiClient,
  domain: string | undefined,
  p: SchedParams,
  json: boolean,
  keys: string[],
  titles: string[],
): Promise<string> {
  if (Object.keys(p).length > 0) {
    if (!domain) throw new UsageError("setting parameters needs -d VM");
    const res = await api.setSchedParams(domain, p);
    if (json) return JSON.stringify(res, null, 2);
    const note = res.note ? `\nnote: ${res.note}` : "";
    return schedParamRows([{ name: domain, sched: res.params } as VmSummary], keys, titles) + note;
  }
  let vms = await api.listVms();
  if (domain) {
    vms = vms.filter((x) => x.name === domain);
    if (vms.length === 0) await api.getVm(domain); // the server's "no VM named" error
  }
  return json
    ? JSON.stringify(vms.map((x) => ({ name: x.name, sched: x.sched })), null, 2)
    : schedParamRows(vms, keys, titles);
}

/** Runs one parsed command against the API; returns what to print. */
async function run(api: ApiClient, cmd: string, rest: string[], v: Values): Promise<string> {
  const json = v.json ?? false;
  const vmArg = () => {
    if (rest.length !== 1) throw new UsageError(`${cmd} takes one VM name`);
    return rest[0];
  };
  const noArgs = () => {
    if (rest.length) throw new UsageError(`${cmd} takes no arguments, got '${rest.join(" ")}'`);
  };
  const dump = (x: unknown) => JSON.stringify(x, null, 2);
  switch (cmd) {
    case "list": {
      noArgs();
      const vms = await api.listVms();
      return json ? dump(vms) : listText(vms);
    }
    case "show": {
      const vm = await api.getVm(vmArg());
      return json ? dump(vm) : showText(vm);
    }
    case "pause":
    case "resume":
    case "stop": {
      const state = cmd === "pause" ? "paused" : cmd === "resume" ? "running" : "stopped";
      const vm = await api.setVmState(vmArg(), state);
      return json ? dump(vm) : `vm ${vm.name}: ${vm.state}`;
    }
    case "sched":
      noArgs();
      return json ? dump(await api.getSched()) : await schedText(api);
    case "sched-credit":
      noArgs();
      return await schedCredit(api, v, json);
    case "sched-rtds":
      noArgs();
      return await schedRtds(api, v, json);
    case "policy": {
      if (rest.length !== 1) throw new UsageError("policy takes one plugin path or URL");
      const params = parseSchedParams(v["sched-param"] ?? []);
      const res = await api.swapPolicy(resolvePlugin(rest[0]), params);
      return json ? dump(res) : `policy: ${res.policy}`;
    }
    case "eject": {
      if (rest.length > 1) throw new UsageError("eject takes at most one reason (quote it)");
      const res = await api.eject(v.reason ?? rest[0]);
      const last = res.ejections.at(-1);
      return json ? dump(res) : `ejected${last ? ` ${last.plugin}` : ""}; policy now ${res.policy}`;
    }
    case "metrics":
      noArgs();
      return (await api.metrics()).trimEnd();
  }
  throw new UsageError(`unknown ctl command '${cmd}' (see ctl --help)`);
}

/**
 * Runs `ctl` with `args`; returns the exit status (0, or 1 when the server refused or could
 * not be reached). Bad usage throws {@linkcode UsageError}.
 */
export async function ctlCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: OPTIONS,
    strict: true,
    allowPositionals: true,
  });
  const v = values as Values;
  if (v.help) {
    console.log(CTL_HELP);
    return 0;
  }
  const [cmd, ...rest] = positionals;
  if (cmd === undefined) throw new UsageError("no command given (see ctl --help)");
  const allowed = COMMAND_OPTIONS[cmd];
  if (!allowed) throw new UsageError(`unknown ctl command '${cmd}' (see ctl --help)`);
  for (const k of Object.keys(FLAG_NAMES) as (keyof Values)[]) {
    if (v[k] !== undefined && !allowed.includes(k)) {
      throw new UsageError(`${FLAG_NAMES[k]} does not go with '${cmd}'`);
    }
  }
  const path = v.api ?? Deno.env.get("DENO_VMM_API");
  if (!path) throw new UsageError("no API socket: give --api PATH or set DENO_VMM_API");
  const api = new ApiClient(path);
  try {
    console.log(await run(api, cmd, rest, v));
    return 0;
  } catch (e) {
    if (!(e instanceof ApiRequestError)) throw e;
    const status = e.status ? ` (HTTP ${e.status})` : "";
    console.error(`deno-vmm ctl ${cmd}: ${e.message}${status}`);
    return 1;
  } finally {
    api.close();
  }
}

if (import.meta.main) {
  // Runnable on its own too: `deno run -A src/cli/ctl.ts --api PATH list`.
  try {
    Deno.exit(await ctlCommand(Deno.args));
  } catch (e) {
    const err = e as Error & { code?: string };
    console.error(`deno-vmm ctl: ${err.message}`);
    const usage = e instanceof UsageError || (err.code?.startsWith("ERR_PARSE_ARGS") ?? false);
    Deno.exit(usage ? EXIT_USAGE : 1);
  }
}
