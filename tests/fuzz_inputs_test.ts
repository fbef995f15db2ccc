/**
 * Host-side fuzzing, short and seeded (the long run is `deno task fuzz`): VM configs, scenario
 * files and kernel images, generated and mutated with fast-check, are accepted within the limits
 * or refused with ConfigError / ElfError, never another exception; the CLI exits 2 on a sample.
 * Plus the regressions the fuzzing found.
 */
import { deepStrictEqual as assertEquals, match, ok as assert, throws } from "node:assert/strict";
import { test } from "./helpers/deadline.ts";
import { KERNEL } from "./helpers/vmm.ts";
import { runCli } from "./helpers/cli.ts";
import { buildElf, fuzzElf, loadOrRefuse } from "../bench/fuzz_elf.ts";
import { fuzzInputs, scenarioBases, scenarioCase, vmConfigCase } from "../bench/fuzz_inputs.ts";
import { ElfError, parseElf } from "../src/vm/elf.ts";
import { loadPvhKernel } from "../src/vm/pvh.ts";
import { GuestMemory } from "../src/vm/memory.ts";
import { ConfigError, MAX_CMDLINE_BYTES, resolveVmConfig } from "../src/vm/config.ts";
import { parseScenario } from "../src/scenario/scenario.ts";

test("fuzz: kernel images are loaded within RAM or refused with an ElfError", async () => {
  const kernel = await Deno.readFile(KERNEL);
  const r = fuzzElf({ numRuns: 3000, seed: 19, kernel });
  assert(r.loaded > 0 && r.refused > 0, JSON.stringify(r));
});

test("fuzz: VM configs and scenarios are accepted within limits or refused with a ConfigError", async () => {
  const r = await fuzzInputs({ numRuns: 1500, seed: 19, scenarios: await scenarioBases() });
  for (const [kind, c] of Object.entries(r)) {
    assert(c.accepted > 0 && c.refused > 0, `${kind}: ${JSON.stringify(c)}`);
  }
});

const base = {
  cls: 2,
  endian: 1,
  machine: 62,
  entry: 0x100000n,
  segments: [{ type: 1, paddr: 0x100000n, fileSize: 16, memSize: 0x1000n }],
  note: { entry: 0x100000n, size: 4, owner: "Xen", type: 18 },
  phentsize: 56,
  truncate: null,
};

test("ELF: a note size near 2^32 is an ElfError, not a RangeError", () => {
  const image = buildElf({ ...base, note: { ...base.note, namesz: 0xffffffff } });
  const memory = GuestMemory.allocate(16 << 20);
  try {
    assertEquals(parseElf(image).pvhEntry, undefined); // the note is malformed: no entry from it
    throws(() => loadPvhKernel(memory, { image, cmdline: "", name: "k" }), ElfError);
    assertEquals(loadOrRefuse(buildElf(base), memory), "loaded");
  } finally {
    memory.free();
  }
});

test("ELF: an entry outside the segments and overlapping segments are refused", () => {
  const memory = GuestMemory.allocate(16 << 20);
  try {
    const outside = buildElf({ ...base, note: { ...base.note, entry: 0x800000n } });
    throws(
      () => loadPvhKernel(memory, { image: outside, cmdline: "", name: "k" }),
      (e: Error) => e instanceof ElfError && /entry point 0x800000 is outside/.test(e.message),
    );
    const overlap = buildElf({
      ...base,
      segments: [base.segments[0], { type: 1, paddr: 0x100800n, fileSize: 8, memSize: 0x1000n }],
    });
    throws(
      () => loadPvhKernel(memory, { image: overlap, cmdline: "", name: "k" }),
      (e: Error) => e instanceof ElfError && /overlap/.test(e.message),
    );
  } finally {
    memory.free();
  }
});

test("config: a kernel path that is no URL and a cmdline too long are ConfigErrors", async () => {
  await assertRejects(resolveVmConfig({ name: "a", kernel: "\ud800" }), /vm\.kernel: not a path/);
  await assertRejects(resolveVmConfig({ name: "a", kernel: "http://[" }), /vm\.kernel/);
  const long = "x".repeat(MAX_CMDLINE_BYTES + 1);
  await assertRejects(
    resolveVmConfig({ name: "a", cmdline: long }),
    /vm\.cmdline: is 4064 bytes; at most 4063/,
  );
  assertEquals(
    await vmConfigCase({ name: "a", cmdline: "x".repeat(MAX_CMDLINE_BYTES) }),
    "accepted",
  );
});

async function assertRejects(p: Promise<unknown>, re: RegExp) {
  try {
    await p;
  } catch (e) {
    assert(e instanceof ConfigError, `${e}`);
    match(e.message, re);
    return;
  }
  throw new Error(`not rejected (${re})`);
}

test("scenario: slots, seconds, VMs and vCPUs have upper limits; goal keys are its own", () => {
  const ok = { vms: [{ name: "a", workload: { kind: "spin" } }] };
  assertEquals(scenarioCase(ok), "accepted");
  for (
    const [bad, re] of [
      [{ ...ok, slots: 2 ** 53 }, /slots: must be <= 1024/],
      [{ ...ok, seconds: 1e300 }, /seconds: must be <= 86400/],
      [{ vms: [{ ...ok.vms[0], vcpus: 1e9 }] }, /vcpus: must be <= 64/],
      [{ ...ok, goal: { constructor: 1 } }, /goal\.constructor: unknown key/],
    ] as const
  ) {
    throws(
      () => parseScenario(bad, "f.json"),
      (e: Error) => e instanceof ConfigError && re.test(e.message),
    );
  }
});

test("CLI: damaged config and scenario files exit 2 with the file and field named", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cases: [string[], string, RegExp][] = [
      [
        ["run", "--config"],
        '{"vms": [{"name": "a", "vcpus": 65}]}',
        /c0\.json: vms\[0\]\.vcpus: must be between 1 and 64/,
      ],
      [
        ["run", "--config"],
        '{"vms": [{"name": "a", "kernel": "\\ud800"}]}',
        /c1\.json: vms\[0\]\.kernel: not a path/,
      ],
      [
        ["scenario", "--sim"],
        '{"slots": 1e12, "vms": [{"name": "a", "workload": {"kind": "spin"}}]}',
        /slots: must be <= 1024/,
      ],
      [["scenario", "--sim"], '{"vms": [{"name": "a", "workload": {"kind": "sp', /not valid JSON/],
    ];
    for (const [i, [args, text, re]] of cases.entries()) {
      const file = `${dir}/c${i}.json`;
      await Deno.writeTextFile(file, text);
      const r = await runCli([...args, file]);
      assertEquals(r.code, 2, `${args.join(" ")} ${text}: ${r.stderr}`);
      match(r.stderr, re);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}, { deadlineMs: 90_000 });
