/**
 * `deno task demo`: the same three VMs twice on one CPU, first with Linux scheduling their vCPU
 * threads (`host`, weights as nice levels), then under a deno-vmm policy (Xen's Credit by
 * default) holding the CPU as one slot: an echo server answering requests and two CPU hogs
 * weighted 2:1. A live per-VM view while each runs; then what changed, in plain words (the hogs'
 * split against their weights, echo's latency, the slot time the scheduler cost), the trace of
 * every decision and its timeline picture.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { formatResult, type ScenarioResult } from "../scenario/result.ts";
import { runScenarioKvm, vmCpuNs } from "../scenario/run_kvm.ts";
import { parseScenario } from "../scenario/scenario.ts";
import type { Vmm } from "../vmm.ts";
import { writeTraceFile } from "../trace/write.ts";
import { analyzeTrace } from "../trace/summary.ts";
import { toPerfetto } from "../trace/perfetto.ts";
import { timelineSvg } from "../trace/timeline_svg.ts";
import { UsageError } from "./usage.ts";
import { startTop } from "./top.ts";

/** Help text of `demo`. */
export const DEMO_HELP =
  `Usage: deno run -A mod.ts demo [--seconds N] [--sched PLUGIN] [--trace FILE]

The same three VMs run twice on one CPU: 'echo' answers 500 requests/s (50 us of work each),
'heavy' (weight 512) and 'light' (weight 256) are CPU hogs. First Linux schedules their vCPU
threads (weights as nice levels), then deno-vmm holds the CPU as one slot and a policy plugin
decides who runs (Xen's Credit, plugins/credit.ts, in its sandbox). A live line shows each VM's
share of the CPU; then what changed: how the hogs split what echo leaves against their 2:1
weights, echo's latency (Credit's BOOST lets a waking echo preempt a hog, as long as echo uses
less than its weight's share: at 1000 requests/s it would use about all of it here, and wait
behind the hogs' 30 ms slices), and the CPU time the scheduler itself cost. The trace of every
decision and a picture of its last 100 ms are written.

Options:
  --seconds N     how long to measure each of the two runs (default 8)
  --sched PLUGIN  the deno-vmm policy (default plugins/credit.ts beside mod.ts)
  --trace FILE    where to write the trace (default demo-trace.json; the picture goes beside it,
                  .svg for .json)
  --top           the full live view (every vCPU, exits/s, credit, priority) instead of one line
  -h, --help      this text
`;

const DEMO = {
  name: "demo",
  description: "echo beside two weighted hogs on one CPU",
  slots: 1,
  seconds: 10,
  policy: "credit",
  vms: [
    {
      name: "echo",
      workload: { kind: "echo", mode: "open", ratePerSec: 500, serviceUs: 50 },
    },
    { name: "heavy", workload: { kind: "spin" }, sched: { weight: 512 } },
    { name: "light", workload: { kind: "spin" }, sched: { weight: 256 } },
  ],
};

/** Prints each VM's CPU share of the slot once a second (redrawn in place on a terminal). */
function liveView(vmm: Vmm): () => void {
  const tty = Deno.stdout.isTerminal();
  const enc = new TextEncoder();
  let last = new Map<string, number>(), lastT = performance.now(), lines = 0;
  const id = setInterval(() => {
    const now = performance.now(), wall = (now - lastT) * 1e6;
    const parts: string[] = [];
    for (const vm of vmm.vms.values()) {
      const ns = vmCpuNs(vm); // the meter of the summary table below
      const prev = last.get(vm.name);
      if (prev !== undefined) {
        parts.push(`${vm.name.padEnd(6)} ${(((ns - prev) / wall) * 100).toFixed(1).padStart(5)} %`);
      }
      last.set(vm.name, ns);
    }
    lastT = now;
    if (!parts.length) return;
    const text = `  ${parts.join("   ")}`;
    if (tty && lines) Deno.stdout.writeSync(enc.encode("\x1b[1A\x1b[2K"));
    Deno.stdout.writeSync(enc.encode(text + "\n"));
    lines++;
  }, 1000);
  return () => {
    clearInterval(id);
    last = new Map();
  };
}

/** The numbers a comparison is made of, from one run. */
interface Outcome {
  heavy: number;
  light: number;
  echoP99Ms: number;
  used: number;
}

function outcome(r: ScenarioResult): Outcome {
  const vm = (n: string) => r.vms.find((v) => v.name === n)!;
  return {
    heavy: vm("heavy").share,
    light: vm("light").share,
    echoP99Ms: vm("echo").p99Us / 1000,
    used: r.vms.reduce((a, v) => a + v.share, 0),
  };
}

const pct = (x: number) => `${(x * 100).toFixed(1)} %`;

/** What changed from Linux to the policy, in plain words, from the two runs' numbers. */
export function whatChanged(host: Outcome, policy: Outcome, name: string): string {
  const ratio = (o: Outcome) => o.heavy / Math.max(o.light, 1e-9);
  const split = (o: Outcome) =>
    `heavy ${pct(o.heavy)}, light ${pct(o.light)} (${ratio(o).toFixed(2)}:1)`;
  const near = (o: Outcome) => Math.abs(ratio(o) - 2) <= 0.2;
  const lines = [
    `weights 2:1   Linux: ${split(host)}; ${name}: ${split(policy)}.`,
    `              ${
      near(policy)
        ? `${name} splits what echo leaves as the weights say`
        : `${name} is ${ratio(policy) > 2 ? "above" : "below"} the weights' 2:1`
    }${near(host) ? "; Linux's nice levels come close too" : "; Linux's nice levels do not"}.`,
  ];
  const h = host.echoP99Ms, p = policy.echoP99Ms;
  const faster = h / Math.max(p, 1e-9);
  lines.push(
    `echo p99      Linux: ${h.toFixed(2)} ms; ${name}: ${p.toFixed(2)} ms: ${
      faster >= 1.5
        ? `${
          faster.toFixed(1)
        }x lower. A request no longer waits behind a hog for Linux's next tick`
        : faster <= 1 / 1.5
        ? `${(1 / faster).toFixed(1)}x higher under ${name}`
        : "about the same"
    }.`,
  );
  lines.push(
    `CPU used      Linux: ${pct(host.used)} by the VMs; ${name}: ${pct(policy.used)}. The rest ` +
      `is what holding the CPU as a slot cost: hand-offs and the scheduler's own threads.`,
  );
  return lines.join("\n");
}

/** Runs the demo. */
export async function demoCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      seconds: { type: "string" },
      sched: { type: "string" },
      trace: { type: "string" },
      top: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    console.log(DEMO_HELP);
    return 0;
  }
  const seconds = values.seconds ? Number(values.seconds) : 8;
  if (!(seconds > 0)) throw new UsageError(`--seconds must be a positive number`);
  const traceFile = values.trace ?? "demo-trace.json";
  const svgFile = traceFile.replace(/\.json$/, "") + ".svg";
  const scenario = parseScenario(DEMO, "demo");
  const plugin = values.sched ?? new URL("../../plugins/credit.ts", import.meta.url).href;
  const name = plugin.split("/").pop()!.replace(/\.ts$/, "");
  const run = async (policy: string, title: string, trace: boolean) => {
    console.log(
      `${title}: echo (500 req/s) + heavy (weight 512) + light (weight 256), ${seconds} s`,
    );
    let stopView = () => {};
    const r = await runScenarioKvm(scenario, {
      policy,
      seconds,
      onVmm: (vmm) => {
        if (values.top) {
          const top = startTop(vmm);
          stopView = () => void top.stop();
        } else {
          stopView = liveView(vmm);
        }
      },
      beforeClose: async (vmm) => {
        stopView();
        if (!trace) return;
        const data = await vmm.scheduler!.trace();
        await writeTraceFile(traceFile, data);
        // The picture from the same analysis, not by parsing the file back; its times count from
        // the trace's first record, as the file's do.
        const a = analyzeTrace(data);
        const endMs = (a.end - a.start) / 1e6;
        await Deno.writeTextFile(
          svgFile,
          timelineSvg(toPerfetto(a), { fromMs: Math.max(0, endMs - 100), toMs: endMs }),
        );
      },
    });
    console.log(formatResult(r) + "\n");
    return r;
  };
  const host = await run("host", "Linux schedules the vCPU threads", false);
  const policy = await run(plugin, `deno-vmm, ${name} on one slot`, true);
  console.log(whatChanged(outcome(host), outcome(policy), name));
  console.log(`\ntrace of every scheduling decision: ${traceFile} (Perfetto JSON: open it at`);
  console.log(`https://ui.perfetto.dev); its last 100 ms drawn: ${svgFile}`);
  return 0;
}
