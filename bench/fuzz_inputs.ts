/**
 * Host-side fuzzing of the files a user gives deno-vmm, with fast-check: structured mutations of
 * valid VM configs (`src/vm/config.ts`, through `resolveVmConfig` and `run --config`'s reader)
 * and of the scenario files in bench/scenarios (`parseScenario`), plus text-level damage
 * (truncation, stray bytes) read from a file. Every input is either accepted, and then within
 * the limits a run needs (checked here as invariants), or refused with a {@linkcode ConfigError}
 * (the CLI's exit status 2): never another exception.
 *
 * @module
 */
// deno-lint-ignore no-import-prefix
import fc from "npm:fast-check@^4";
import { ConfigError, MAX_VCPUS, resolveVmConfig } from "../src/vm/config.ts";
import { CMDLINE_MAX } from "../src/vm/pvh.ts";
import {
  loadScenario,
  MAX_SCENARIO_SECONDS,
  MAX_SCENARIO_SLOTS,
  MAX_SCENARIO_VMS,
  parseScenario,
  type Scenario,
} from "../src/scenario/scenario.ts";
import { readVmsConfig } from "../src/cli/run.ts";

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Values that stress a validator: edges, wrong types, huge and odd strings, prototype keys. */
export function oddValue(): fc.Arbitrary<Json> {
  return fc.oneof(
    fc.constantFrom<Json>(
      0,
      -0,
      -1,
      0.5,
      1,
      2,
      63,
      64,
      65,
      1023,
      1024,
      1025,
      4096,
      1e9,
      2 ** 31,
      2 ** 32,
      2 ** 53 + 2,
      1e308,
      -1e308,
      5e-324,
      "",
      " ",
      "0",
      "1",
      "x".repeat(5000),
      "\u0000",
      "\ud800",
      "../../etc/passwd",
      "builtin:rr",
      null,
      true,
      false,
      [],
      {},
      [1],
      { "__proto__": 1 },
    ),
    fc.double(),
    fc.integer(),
    fc.string({ maxLength: 40 }),
    fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<Json>,
  );
}

/** Every path (keys and indices) in `v`, the root included. */
function paths(v: Json, at: (string | number)[] = [], out: (string | number)[][] = []) {
  out.push(at);
  if (Array.isArray(v)) v.forEach((x, i) => paths(x, [...at, i], out));
  else if (v !== null && typeof v === "object") {
    for (const [k, x] of Object.entries(v)) paths(x, [...at, k], out);
  }
  return out;
}

/** One edit of a JSON document. */
interface Edit {
  op: "delete" | "set" | "add" | "wrap" | "duplicate";
  pick: number;
  key: string;
  value: Json;
}

function applyEdit(doc: Json, edit: Edit): Json {
  // A copy: fast-check hands out the same constant objects again, which later edits would change.
  const e = { ...edit, value: structuredClone(edit.value) };
  const all = paths(doc);
  const path = all[e.pick % all.length];
  if (path.length === 0) {
    return e.op === "wrap" ? [doc] : e.op === "set" ? e.value : doc;
  }
  const parent = path.slice(0, -1).reduce<Json>(
    (o, k) => (o as Record<string, Json>)[k as string],
    doc,
  ) as Record<string, Json> | Json[];
  const last = path[path.length - 1];
  const here = (parent as Record<string, Json>)[last as string];
  switch (e.op) {
    case "delete":
      if (Array.isArray(parent)) parent.splice(last as number, 1);
      else delete parent[last as string];
      break;
    case "set":
      (parent as Record<string, Json>)[last as string] = e.value;
      break;
    case "add":
      if (here !== null && typeof here === "object" && !Array.isArray(here)) {
        Object.defineProperty(here, e.key, {
          value: e.value,
          enumerable: true,
          writable: true,
          configurable: true,
        });
      } else if (Array.isArray(here)) here.push(e.value);
      break;
    case "wrap":
      (parent as Record<string, Json>)[last as string] = [here];
      break;
    case "duplicate":
      if (Array.isArray(parent)) parent.push(structuredClone(here));
      else if (Array.isArray(here) && here.length) here.push(structuredClone(here[0]));
      break;
  }
  return doc;
}

/** 1 to 4 structured edits of a copy of one of `bases`. */
export function mutatedJson(bases: Json[]): fc.Arbitrary<Json> {
  const edit = fc.record({
    op: fc.constantFrom<Edit["op"]>("delete", "set", "set", "set", "add", "wrap", "duplicate"),
    pick: fc.nat(),
    key: fc.oneof(
      fc.constantFrom("__proto__", "constructor", "toString", "hasOwnProperty", "extra", ""),
      fc.string({ maxLength: 8 }),
    ),
    value: oddValue(),
  });
  return fc.record({
    base: fc.nat({ max: bases.length - 1 }),
    edits: fc.array(edit, { minLength: 1, maxLength: 4 }),
  }).map(({ base, edits }) => edits.reduce(applyEdit, structuredClone(bases[base])));
}

/** Text-level damage to a document: truncated, a byte replaced or inserted. */
export function damagedText(bases: Json[]): fc.Arbitrary<string> {
  return fc.record({
    base: fc.nat({ max: bases.length - 1 }),
    cut: fc.option(fc.nat(), { nil: null }),
    at: fc.nat(),
    ch: fc.constantFrom("", "{", "}", "[", "]", ",", ":", '"', "\\", "\u0000", "\ufffd", "1e999"),
  }).map(({ base, cut, at, ch }) => {
    let t = JSON.stringify(bases[base], null, 1);
    if (cut !== null) t = t.slice(0, cut % (t.length + 1));
    const i = at % (t.length + 1);
    return t.slice(0, i) + ch + t.slice(i);
  });
}

/** Valid VM configs to start from (the kernel path is not read by the checks). */
export const VM_BASES: Json[] = [
  { name: "a", vcpus: 2, memoryMiB: 64, cmdline: "workload=spin seconds=1" },
  {
    name: "web-1",
    vcpus: 4,
    memoryMiB: 128,
    kernel: "/nonexistent/kernel.elf",
    cmdline: "workload=echo service_us=50",
    unhandled: "stop",
    haltPollUs: 50,
    sched: { weight: 512, cap: 50, budget_ms: 2, period_ms: 10 },
  },
];

function checkResolvedVm(c: Awaited<ReturnType<typeof resolveVmConfig>>): void {
  const bad = (what: string) => {
    throw new Error(`accepted a VM config with ${what}: ${JSON.stringify(c)}`);
  };
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(c.name)) bad("a bad name");
  if (!Number.isInteger(c.vcpus) || c.vcpus < 1 || c.vcpus > MAX_VCPUS) bad("bad vcpus");
  if (!Number.isInteger(c.memoryBytes) || c.memoryBytes < 2 << 20) bad("bad memory");
  // The command line with what the host appends (` ncpus=64 tsc_khz=4294967295`) and its NUL.
  if (new TextEncoder().encode(c.cmdline).length + 32 > CMDLINE_MAX - 1) bad("a long cmdline");
  if (c.unhandled !== "ignore" && c.unhandled !== "stop") bad("a bad unhandled policy");
  if (!(c.haltPollNs >= 0 && c.haltPollNs <= 10e6)) bad("a bad halt poll");
  for (const v of Object.values(c.sched)) {
    if (typeof v === "number" ? !Number.isFinite(v) : typeof v === "object") bad("bad sched");
  }
}

function checkScenario(s: Scenario): void {
  const bad = (what: string) => {
    throw new Error(`accepted a scenario with ${what}: ${JSON.stringify(s).slice(0, 400)}`);
  };
  if (!Number.isInteger(s.slots) || s.slots < 1 || s.slots > MAX_SCENARIO_SLOTS) bad("bad slots");
  if (!(s.seconds >= 0.1 && s.seconds <= MAX_SCENARIO_SECONDS)) bad("bad seconds");
  if (!(s.ratelimitUs >= 0 && Number.isFinite(s.ratelimitUs))) bad("a bad rate limit");
  if (s.vms.length < 1 || s.vms.length > MAX_SCENARIO_VMS) bad("a bad number of VMs");
  const names = new Set(s.vms.map((v) => v.name));
  if (names.size !== s.vms.length) bad("duplicate names");
  for (const v of s.vms) {
    if (!Number.isInteger(v.vcpus) || v.vcpus < 1 || v.vcpus > MAX_VCPUS) bad("bad vcpus");
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(v.name)) bad("a bad VM name");
  }
}

/** Resolves `value` as a VM config: "accepted" (invariants hold), "refused" (ConfigError). */
export async function vmConfigCase(value: unknown): Promise<"accepted" | "refused"> {
  try {
    checkResolvedVm(await resolveVmConfig(value, "vm"));
    return "accepted";
  } catch (e) {
    if (e instanceof ConfigError) return "refused";
    throw e;
  }
}

/** Parses `value` as a scenario: "accepted" (invariants hold) or "refused" (ConfigError). */
export function scenarioCase(value: unknown): "accepted" | "refused" {
  try {
    checkScenario(parseScenario(value, "fuzz.json"));
    return "accepted";
  } catch (e) {
    if (e instanceof ConfigError) return "refused";
    throw e;
  }
}

/** Options of {@linkcode fuzzInputs}. */
export interface FuzzInputsOptions {
  /** Cases of each structured kind (VM configs, scenarios); a tenth of it for damaged files. */
  numRuns: number;
  /** fast-check seed. */
  seed: number;
  /** The valid scenario documents to mutate. */
  scenarios: Json[];
}

/** Counts of what {@linkcode fuzzInputs} saw. */
export type InputCounts = Record<"vm" | "scenario" | "vmFile" | "scenarioFile", {
  accepted: number;
  refused: number;
}>;

/** Runs every property; returns how many inputs of each kind were accepted and refused. */
export async function fuzzInputs(o: FuzzInputsOptions): Promise<InputCounts> {
  const counts: InputCounts = {
    vm: { accepted: 0, refused: 0 },
    scenario: { accepted: 0, refused: 0 },
    vmFile: { accepted: 0, refused: 0 },
    scenarioFile: { accepted: 0, refused: 0 },
  };
  await fc.assert(
    fc.asyncProperty(mutatedJson(VM_BASES), async (v) => {
      counts.vm[await vmConfigCase(v)]++;
    }),
    { numRuns: o.numRuns, seed: o.seed },
  );
  fc.assert(
    fc.property(mutatedJson(o.scenarios), (v) => {
      counts.scenario[scenarioCase(v)]++;
    }),
    { numRuns: o.numRuns, seed: o.seed + 1 },
  );
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-fuzz-" });
  try {
    const file = `${dir}/input.json`;
    const files = Math.max(1, Math.floor(o.numRuns / 10));
    const vmFiles: Json[] = [{ vms: VM_BASES }, {
      vms: VM_BASES,
      scheduler: { plugin: "builtin:rr" },
    }];
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(damagedText(vmFiles), mutatedJson(vmFiles).map((j) => JSON.stringify(j))),
        async (text) => {
          await Deno.writeTextFile(file, text);
          try {
            const f = await readVmsConfig(file);
            for (const [i, v] of f.vms.entries()) {
              checkResolvedVm(await resolveVmConfig(v, `vms[${i}]`));
            }
            counts.vmFile.accepted++;
          } catch (e) {
            if (!(e instanceof ConfigError)) throw e;
            counts.vmFile.refused++;
          }
        },
      ),
      { numRuns: files, seed: o.seed + 2 },
    );
    await fc.assert(
      fc.asyncProperty(damagedText(o.scenarios), async (text) => {
        await Deno.writeTextFile(file, text);
        try {
          checkScenario(await loadScenario(file));
          counts.scenarioFile.accepted++;
        } catch (e) {
          if (!(e instanceof ConfigError)) throw e;
          counts.scenarioFile.refused++;
        }
      }),
      { numRuns: files, seed: o.seed + 3 },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  return counts;
}

/** The scenario files shipped in bench/scenarios, parsed. */
export async function scenarioBases(): Promise<Json[]> {
  const dir = new URL("./scenarios/", import.meta.url);
  const out: Json[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.name.endsWith(".json")) {
      out.push(JSON.parse(await Deno.readTextFile(new URL(e.name, dir))));
    }
  }
  return out.sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
}
