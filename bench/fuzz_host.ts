/**
 * `deno task fuzz [--cases N] [--seed N] [--only api|inputs|elf]`: the long host-side fuzzing
 * run (the suite runs a short seeded version: tests/fuzz_api_test.ts, tests/fuzz_inputs_test.ts).
 * N cases (default 100,000) of each kind: API requests through the handler, VM configs and
 * scenarios (a tenth of N as damaged files), generated and mutated kernel images; plus, over the
 * API's socket, 300 concurrent clients, slow and abandoned connections and an endless body. Every
 * case must end in a clear refusal (4xx, ConfigError, ElfError) or an accepted input within the
 * limits, and the VM no request names must run on. Prints counts and times; exits 1 on a failure
 * (fast-check prints the seed and the shrunk counterexample).
 *
 * @module
 */
import { parseArgs } from "node:util";
import * as api from "./fuzz_api.ts";
import { fuzzInputs, scenarioBases } from "./fuzz_inputs.ts";
import { fuzzElf } from "./fuzz_elf.ts";
import { guestKernel } from "../src/vm/guest_kernel.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    cases: { type: "string", default: "100000" },
    seed: { type: "string", default: "1" },
    only: { type: "string" },
  },
});
const cases = Number(values.cases), seed = Number(values.seed);
if (!Number.isInteger(cases) || cases < 1) {
  console.error(`--cases: expected an integer >= 1, got "${values.cases}"`);
  Deno.exit(2);
}
if (!Number.isInteger(seed)) {
  console.error(`--seed: expected an integer, got "${values.seed}"`);
  Deno.exit(2);
}
if (values.only !== undefined && !["api", "inputs", "elf"].includes(values.only)) {
  console.error(`--only: expected api, inputs or elf, got "${values.only}"`);
  Deno.exit(2);
}
const run = (kind: string) => values.only === undefined || values.only === kind;
const time = async <T>(what: string, f: () => Promise<T> | T): Promise<T> => {
  const t0 = performance.now();
  const r = await f();
  console.log(
    `  ${what}: ${JSON.stringify(r)} (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
  );
  return r;
};

let failed = false;
try {
  if (run("elf")) {
    console.log(`== kernel images: ${cases} generated + ${cases} mutated, seed ${seed}`);
    const kernel = await Deno.readFile(await guestKernel());
    await time("loaded/refused", () => fuzzElf({ numRuns: cases, seed, kernel }));
  }
  if (run("inputs")) {
    console.log(`== VM configs and scenarios: ${cases} each, ${cases / 10} damaged files each`);
    const scenarios = await scenarioBases();
    await time("accepted/refused", () => fuzzInputs({ numRuns: cases, seed, scenarios }));
  }
  if (run("api")) {
    console.log(`== control API: ${cases} requests, then the socket`);
    const f = await api.apiFixture();
    try {
      const before = api.progress(f.keep);
      await time("handler statuses", () => api.fuzzHandler(f, { numRuns: cases, seed }));
      const { server, dir } = await api.serve(f);
      try {
        await time(
          "300 concurrent clients x 20",
          () => api.fuzzConcurrent(server, { clients: 300, each: 20, seed }),
        );
        await time("slow clients", () => api.slowClients(server, { clients: 50, delayMs: 10 }));
        await time("abandoned connections", () => api.abandonedClients(server, 500));
        const endless = await time("endless body", () => api.endlessBody(server, 1 << 30));
        const alive = await api.stillAnswers(server);
        const moved = api.progress(f.keep) > before;
        console.log(`  server answers: ${alive}; keep: ${f.keep.state}, progressed: ${moved}`);
        if (!alive || !moved || f.keep.state !== "running" || endless.status !== 413) {
          failed = true;
        }
      } finally {
        await server.close();
        await Deno.remove(dir, { recursive: true });
      }
    } finally {
      await f.close();
    }
  }
} catch (e) {
  console.error(e);
  failed = true;
}
Deno.exit(failed ? 1 : 0);
