/**
 * `deno task demo`: boots a few of our guests side by side, with nothing to prepare but
 * `deno task build`, and shows what each vCPU did.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { Vmm } from "../vmm.ts";
import { DEFAULT_KERNEL } from "../vm/config.ts";
import { exitReasonName } from "../kvm/constants.ts";
import type { Vm } from "../vm/vm.ts";

/** Help text of `demo`. */
export const DEMO_HELP = `Usage: deno run -A mod.ts demo

Boots three VMs at once on our guest kernel: 'hello' (4 vCPUs, SMP bring-up through INIT/SIPI),
'ipi' (2 vCPUs ping-ponging interrupts) and 'sleep' (10 x 10 ms on the LAPIC timer), prints their
consoles, then a table of what each vCPU did (exits by reason, halts, wakes, time in guest).

Options:
  -h, --help   this text
`;

function table(vms: Vm[]): string {
  const rows = [["vm", "vcpu", "exits", "by reason", "halts", "wakes", "guest ms", "halted ms"]];
  for (const vm of vms) {
    for (const c of vm.counters()) {
      const total = c.exits.reduce((a, b) => a + b, 0);
      const top = c.exits
        .map((n, r) => [n, r] as const)
        .filter(([n]) => n > 0)
        .sort((a, b) => b[0] - a[0])
        .slice(0, 3)
        .map(([n, r]) => `${exitReasonName(r)}:${n}`)
        .join(" ");
      rows.push([
        vm.name,
        String(c.vcpu),
        String(total),
        top,
        String(c.halts),
        String(c.wakes),
        (c.nsGuest / 1e6).toFixed(1),
        (c.nsHalted / 1e6).toFixed(1),
      ]);
    }
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join("  ")).join("\n");
}

/** Runs the demo; returns the exit status. */
export async function demoCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { help: { type: "boolean", short: "h" } } });
  if (values.help) {
    console.log(DEMO_HELP);
    return 0;
  }
  const kernel = DEFAULT_KERNEL;
  const vmm = await Vmm.create({
    onConsole: (l) => console.log(`[${l.vm}] ${l.line}`),
    onLog: (m) => console.error(m),
  });
  try {
    const vms = [
      await vmm.createVm({ name: "hello", vcpus: 4, kernel, cmdline: "workload=hello" }),
      await vmm.createVm({ name: "ipi", vcpus: 2, kernel, cmdline: "workload=ipi rounds=500" }),
      await vmm.createVm({
        name: "sleep",
        vcpus: 1,
        kernel,
        cmdline: "workload=sleep count=10 ms=10",
      }),
    ];
    await Promise.all(vms.map((vm) => vm.start()));
    const exits = await Promise.all(vms.map((vm) => vm.wait()));
    console.log(`\n${table(vms)}\n`);
    exits.forEach((e, i) =>
      console.log(
        `vm ${vms[i].name}: ${
          e.kind === "exit" ? `exit status ${e.status}` : e.fault?.message ?? e.kind
        }`,
      )
    );
    return exits.every((e) => e.kind === "exit" && e.status === 0) ? 0 : 1;
  } finally {
    await vmm.close();
  }
}
