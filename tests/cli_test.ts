/** The CLI: happy path, help, and every kind of bad input with a clear message and exit 2. */
import { deepStrictEqual as assertEquals, match, ok as assert } from "node:assert/strict";
import { runCli } from "./helpers/cli.ts";
import { KERNEL, requireKernel } from "./helpers/vmm.ts";
import { test } from "./helpers/deadline.ts";

test("cli run boots hello on 2 vCPUs and prints prefixed console lines", async () => {
  await requireKernel();
  const r = await runCli(["run", "--vm", `name=a,vcpus=2,kernel=${KERNEL},cmdline=workload=hello`]);
  assertEquals(r.code, 0, r.stderr);
  match(r.stdout, /^\[a\] hello from vcpu 0 of 2$/m);
  match(r.stdout, /^\[a\] hello from vcpu 1 of 2$/m);
  match(r.stderr, /vm a: exit status 0/);
});

test("cli --config runs the VMs of a JSON file", async () => {
  await requireKernel();
  const file = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(
    file,
    JSON.stringify({
      vms: [{ name: "c1", kernel: KERNEL }, { name: "c2", vcpus: 2, kernel: KERNEL }],
    }),
  );
  const r = await runCli(["run", "--config", file]);
  await Deno.remove(file);
  assertEquals(r.code, 0, r.stderr);
  match(r.stdout, /^\[c1\] hello from vcpu 0 of 1$/m);
  match(r.stdout, /^\[c2\] hello from vcpu 1 of 2$/m);
});

test("cli run --sched enforces slots and prints the VMs' consoles", async () => {
  await requireKernel();
  const r = await runCli([
    "run",
    "--sched",
    "plugins/credit.ts",
    "--sched-param",
    "tslice_ms=10",
    "--slots",
    "1",
    "--vm",
    `name=a,vcpus=2,weight=512,kernel=${KERNEL},cmdline=workload=hello`,
    "--vm",
    `name=b,kernel=${KERNEL},cmdline=workload=ipi rounds=20`,
  ]);
  assertEquals(r.code, 1, r.stderr); // b has one vCPU: its ipi workload exits 1
  match(r.stdout, /^\[a\] hello: all 2 vcpus up$/m);
  match(r.stdout, /^\[b\] ipi: needs 2 vcpus, have 1$/m);
  match(r.stderr, /vm a: exit status 0/);
});

test("--help on every command", async () => {
  for (const args of [["--help"], ["run", "--help"]]) {
    const r = await runCli(args);
    assertEquals(r.code, 0);
    match(r.stdout, /Usage: deno run -A mod.ts/);
  }
});

const notElf = await Deno.makeTempFile();
await Deno.writeTextFile(notElf, "this is not a kernel\n");

const badInputs: Array<[string, string[], RegExp]> = [
  [
    "missing kernel",
    ["--vm", "name=a,kernel=/nonexistent/kernel.elf"],
    /kernel: \/nonexistent\/kernel.elf not found/,
  ],
  ["not an ELF", ["--vm", `name=a,kernel=${notElf}`], /is not an ELF file/],
  ["no PVH note", ["--vm", "name=a,kernel=/bin/true"], /no PVH entry note/],
  [
    "0 vCPUs",
    ["--vm", `name=a,vcpus=0,kernel=${KERNEL}`],
    /vm.vcpus: must be between 1 and 64, got 0/,
  ],
  [
    "too little memory",
    ["--vm", `name=a,memory=1,kernel=${KERNEL}`],
    /vm.memoryMiB: must be between 2 and/,
  ],
  ["unknown flag", ["--frobnicate"], /Unknown option '--frobnicate'/],
  ["unknown --vm key", ["--vm", "name=a,cpus=2"], /unknown key 'cpus'/],
  ["non-numeric vcpus", ["--vm", "name=a,vcpus=two"], /vcpus must be a number/],
  [
    "duplicate VM name",
    ["--vm", `name=a,kernel=${KERNEL}`, "--vm", `name=a,kernel=${KERNEL}`],
    /a VM named 'a' already exists/,
  ],
  ["bad config file", ["--config", "/nonexistent.json"], /cannot read \/nonexistent.json/],
  ["no VM", [], /no VM given/],
  ["--slots without --sched", ["--slots", "1", "--vm", "name=a"], /need --sched PLUGIN/],
  ["--slots 0", ["--sched", "plugins/rr.ts", "--slots", "0", "--vm", "name=a"], /--slots must be/],
  [
    "a plugin file that does not exist",
    ["--sched", "/nonexistent/policy.ts", "--vm", `name=a,kernel=${KERNEL}`],
    /\/nonexistent\/policy.ts/,
  ],
  ["bad weight", ["--sched", "plugins/rr.ts", "--vm", "name=a,weight=0"], /weight: must be/],
  [
    "--sched-sandbox thread",
    ["--sched", "plugins/rr.ts", "--sched-sandbox", "thread", "--vm", "name=a"],
    /--sched-sandbox must be worker or process, got 'thread'/,
  ],
  [
    "--sched-sandbox without --sched",
    ["--sched-sandbox", "worker", "--vm", "name=a"],
    /need --sched PLUGIN/,
  ],
];

for (const [what, args, message] of badInputs) {
  test(`bad input: ${what} is a clear error with exit code 2`, async () => {
    const r = await runCli(["run", ...args]);
    assertEquals(r.code, 2, `exit ${r.code}; stderr: ${r.stderr}`);
    match(r.stderr, message);
    assert(!r.stderr.includes("    at "), `a stack trace instead of a message:\n${r.stderr}`);
  });
}

test("bad input: unknown command exits 2", async () => {
  const r = await runCli(["frobnicate"]);
  assertEquals(r.code, 2);
  match(r.stderr, /unknown command 'frobnicate'/);
});
