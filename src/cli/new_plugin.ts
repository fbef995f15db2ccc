/**
 * `new-plugin NAME [--dir DIR]`: writes a scheduler plugin skeleton (`NAME.ts`, a FIFO policy
 * that uses only the public contract) and its test (`NAME_test.ts`, run in the simulator through
 * `testing.ts`), both passing as written. Nothing is overwritten.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { UsageError } from "./usage.ts";

/** Help text of `new-plugin`. */
export const NEW_PLUGIN_HELP = `Usage: deno run -A mod.ts new-plugin NAME [--dir DIR]

Writes DIR/NAME.ts, a scheduler plugin to start from (one FIFO queue, 10 ms slices: every
hook of the contract in a few lines), and DIR/NAME_test.ts, its test in the simulator (no
KVM needed). Both pass as written; run the test with

  deno test -A --unstable-worker-options DIR/NAME_test.ts

and the plugin on KVM with \`run --sched DIR/NAME.ts\` (or \`scenario FILE --sched DIR/NAME.ts\`).

Options:
  --dir DIR   where to write (default: the current directory)
  -h, --help  this text
`;

/** Where the generated files import deno-vmm from: a path relative to `dir`, or a URL. */
export function importBase(dir: string, root: URL = new URL("../../", import.meta.url)): string {
  if (root.protocol !== "file:") return root.href;
  const from = Deno.realPathSync(dir).split("/").filter(Boolean);
  const to = decodeURIComponent(root.pathname).split("/").filter(Boolean);
  let i = 0;
  while (i < from.length && i < to.length && from[i] === to[i]) i++;
  const rel = [...from.slice(i).map(() => ".."), ...to.slice(i)].join("/");
  return rel === "" ? "./" : rel.startsWith("..") ? `${rel}/` : `./${rel}/`;
}

/** The plugin skeleton. */
export function pluginSource(name: string, base: string): string {
  return `/**
 * ${name}: a deno-vmm scheduler plugin.
 *
 * One FIFO queue of runnable vCPUs; a free slot takes the head for a 10 ms slice; a vCPU whose
 * slice ends, or that wakes, joins the back. Change the rules here: the contract is
 * \`SchedulerPlugin\` (${base}mod.ts), and the core enforces what the hooks decide.
 *
 * @module
 */
import type { SchedContext, SchedulerPlugin, SlotId, VcpuId, VcpuInfo } from "${base}mod.ts";

/** How long a grant lasts. */
const SLICE_NS = 10_000_000;
/** Runnable vCPUs that hold no slot, oldest first. */
let queue: VcpuId[] = [];

/** The policy: the core calls these hooks, one at a time. */
const plugin: SchedulerPlugin = {
  name: "${name}",

  init(_ctx: SchedContext) {
    queue = [];
  },

  addVcpu(info: VcpuInfo) {
    if (info.state === "runnable") queue.push(info.id);
  },

  removeVcpu(id: VcpuId) {
    queue = queue.filter((v) => v !== id);
  },

  pickNext(_slot: SlotId) {
    const vcpu = queue.shift();
    return vcpu === undefined ? null : { vcpu, sliceNs: SLICE_NS };
  },

  onHalt(_vcpu: VcpuId) {
    // It held a slot, so it is not queued: nothing to do until it wakes.
  },

  onWake(vcpu: VcpuId) {
    queue.push(vcpu);
  },

  onDeschedule(vcpu: VcpuId) {
    queue.push(vcpu);
  },
};

export default plugin;
`;
}

/** The plugin's test: three assertions in the simulator. */
export function testSource(name: string, base: string): string {
  return `import assert from "node:assert/strict";
import { simulate } from "${base}testing.ts";

const plugin = new URL("./${name}.ts", import.meta.url).href;

Deno.test("${name}: two hogs share a slot evenly, and an echo VM is answered", async () => {
  const r = await simulate({
    plugin,
    slots: 1,
    seconds: 5,
    vms: [
      { name: "a", vcpus: 1, workload: { kind: "spin" } },
      { name: "b", vcpus: 1, workload: { kind: "spin" } },
      {
        name: "web",
        vcpus: 1,
        workload: { kind: "echo", mode: "open", ratePerSec: 100, serviceUs: 50 },
      },
    ],
  });
  const [a, b, web] = r.vms;
  assert.deepEqual(r.ejections, [], "the watchdog never stepped in");
  assert.ok(Math.abs(a.share - b.share) < 0.02, \`shares \${a.share} and \${b.share}\`);
  assert.ok(web.echo!.latency.p99 < 50e6, \`echo p99 \${web.echo!.latency.p99 / 1e6} ms\`);
});
`;
}

/** Runs `new-plugin`; returns the exit status. */
export async function newPluginCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { dir: { type: "string" }, help: { type: "boolean", short: "h" } },
  });
  if (values.help) {
    console.log(NEW_PLUGIN_HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError(`give one NAME\n\n${NEW_PLUGIN_HELP}`);
  const name = positionals[0];
  if (!/^[a-z][a-z0-9_]*$/.test(name)) {
    throw new UsageError(
      `NAME must be lower case letters, digits and _ (a file and module name), got '${name}'`,
    );
  }
  const dir = values.dir ?? ".";
  try {
    if (!Deno.statSync(dir).isDirectory) throw new UsageError(`--dir ${dir}: not a directory`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new UsageError(`--dir ${dir}: no such directory`);
    throw e;
  }
  const base = importBase(dir);
  const files = [
    { path: `${dir}/${name}.ts`, text: pluginSource(name, base) },
    { path: `${dir}/${name}_test.ts`, text: testSource(name, base) },
  ];
  for (const f of files) {
    try {
      Deno.lstatSync(f.path);
      throw new UsageError(`${f.path} exists: nothing written`);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  for (const f of files) await Deno.writeTextFile(f.path, f.text, { createNew: true });
  console.log(
    `wrote ${files.map((f) => f.path).join(" and ")}\n` +
      `test it:  deno test -A --unstable-worker-options ${files[1].path}\n` +
      `run it:   deno run -A mod.ts run --sched ${
        files[0].path
      } --vm vcpus=2,cmdline=workload=spin --timeout 5`,
  );
  return 0;
}
