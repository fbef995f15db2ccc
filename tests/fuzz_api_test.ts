/**
 * The control API fuzzed, short and seeded (the long run is `deno task fuzz`): generated requests
 * through the handler, then over the socket hundreds of concurrent clients, slow and abandoned
 * connections and a chunked body that never ends. Every answer is a 2xx or a 4xx with a JSON
 * error, the VM no request names runs on, the server still answers.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { test } from "./helpers/deadline.ts";
import { requireKernel } from "./helpers/vmm.ts";
import * as api from "../bench/fuzz_api.ts";
import { MAX_BODY_BYTES } from "../src/api/http.ts";

test("fuzz: the control API answers 2xx or a clear 4xx, and what runs is undisturbed", async () => {
  await requireKernel();
  const f = await api.apiFixture();
  try {
    const before = api.progress(f.keep);
    const handled = await api.fuzzHandler(f, { numRuns: 3000, seed: 19 });
    assert(handled["200"] > 0 && handled["400"] > 0 && handled["404"] > 0, JSON.stringify(handled));
    const { server, dir } = await api.serve(f);
    try {
      const concurrent = await api.fuzzConcurrent(server, { clients: 200, each: 2, seed: 19 });
      assertEquals(Object.values(concurrent).reduce((a, b) => a + b, 0), 400);
      const slow = await api.slowClients(server, { clients: 10, delayMs: 5 });
      assertEquals(slow, Array(10).fill(404)); // answered: no such VM
      await api.abandonedClients(server, 100);
      // A chunked body that never ends is refused once past the limit, not read to its end.
      const endless = await api.endlessBody(server, 64 << 20);
      assertEquals(endless.status, 413);
      assert(endless.sentBytes < 64 * MAX_BODY_BYTES, `sent ${endless.sentBytes} bytes first`);
      assert(await api.stillAnswers(server));
    } finally {
      await server.close();
      await Deno.remove(dir, { recursive: true });
    }
    assertEquals(f.keep.state, "running");
    assert(api.progress(f.keep) > before, "keep made no progress");
  } finally {
    await f.close();
  }
}, { deadlineMs: 90_000 });
