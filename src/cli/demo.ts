/**
 * `deno task demo`: the embedded default scenario, needing nothing from the user but
 * `deno task build`: an echo server and two weighted CPU hogs share one slot under Xen's Credit
 * policy for about 10 s, with a live per-VM view, then the summary table and the trace file.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { formatResult } from "../scenario/result.ts";
import { runScenarioKvm, vmCpuNs } from "../scenario/run_kvm.ts";
import { parseScenario } from "../scenario/scenario.ts";
import type { Vmm } from "../vmm.ts";
import { writeTraceFile } from "../trace/write.ts";
import { UsageError } from "./usage.ts";
import { startTop } from "./top.ts";

/** Help text of `demo`. */
export const DEMO_HELP = `Usage: deno run -A mod.ts demo [--seconds N] [--trace FILE]

Three VMs share one slot (one pCPU) under Xen's Credit policy (plugins/credit.ts), running in
its sandbox: 'echo' answers 1000 requests/s (50 us of work each), 'heavy' (weight 512) and
'light' (weight 256) are CPU hogs. While it runs, a live view shows each VM's share of the slot;
then the summary: shares (echo takes what its requests cost, and credit splits the rest 2:1 by
weight: in the simulator echo 5.0 %, heavy 63.1 %, light 31.9 %; on KVM a request's exits cost
more of the slot), echo latency (BOOST lets it preempt the hogs), and where the trace of every
scheduling decision went.

Options:
  --seconds N   how long to measure (default 10)
  --trace FILE  where to write the trace (default demo-trace.json)
  --top         the full live view (every vCPU, exits/s, credit, priority) instead of one line
  -h, --help    this text
`;

const DEMO = {
  name: "demo",
  description: "echo beside two weighted hogs on one slot under credit",
  slots: 1,
  seconds: 10,
  policy: "credit",
  vms: [
    {
      name: "echo",
      workload: { kind: "echo", mode: "open", ratePerSec: 1000, serviceUs: 50 },
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
    const text = `slot 0: ${parts.join("   ")}`;
    if (tty && lines) Deno.stdout.writeSync(enc.encode("\x1b[1A\x1b[2K"));
    Deno.stdout.writeSync(enc.encode(text + "\n"));
    lines++;
  }, 1000);
  return () => {
    clearInterval(id);
    last = new Map();
  };
}

/** Runs the demo. */
export async function demoCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      seconds: { type: "string" },
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
  const seconds = values.seconds ? Number(values.seconds) : 10;
  if (!(seconds > 0)) throw new UsageError(`--seconds must be a positive number`);
  const traceFile = values.trace ?? "demo-trace.json";
  const scenario = parseScenario(DEMO, "demo");
  const plugin = new URL("../../plugins/credit.ts", import.meta.url).href;
  console.log(
    `demo: echo (1000 req/s) + heavy (weight 512) + light (weight 256) on 1 slot, credit, ${seconds} s`,
  );
  let stopView = () => {};
  const result = await runScenarioKvm(scenario, {
    policy: plugin,
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
      await writeTraceFile(traceFile, await vmm.scheduler!.trace());
    },
  });
  console.log("\n" + formatResult(result));
  console.log(`\ntrace of every scheduling decision: ${traceFile} (Perfetto JSON: open it at`);
  console.log(
    `https://ui.perfetto.dev, or: deno run -A mod.ts trace timeline ${traceFile} --svg t.svg)`,
  );
  return 0;
}
