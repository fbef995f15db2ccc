/** The host-noise probe of `deno task bench`: it runs on every CPU and its counts add up. */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { benchHostGaps, parseHostGaps } from "../bench/host_noise.ts";
import { test } from "./helpers/deadline.ts";

test("host_gaps: one real record per CPU, gaps counted consistently", async () => {
  const gaps = await benchHostGaps(1);
  // Every CPU this process may use, once each.
  assertEquals(new Set(gaps.map((g) => g.cpu)).size, navigator.hardwareConcurrency);
  assertEquals(gaps.length, navigator.hardwareConcurrency);
  for (const g of gaps) {
    // One second is one 800 ms burst: the probe spun it, not slept it.
    assert(g.spunMs >= 750 && g.spunMs <= 1000, `cpu ${g.cpu} spun ${g.spunMs} ms`);
    if (Deno.uid() === 0) assert(g.realtime, `cpu ${g.cpu}: not real-time as root`);
    assert(g.over3ms <= g.over1ms && g.over1ms <= g.over500us, JSON.stringify(g));
    assert(
      g.over500us === 0 ? g.maxUs === 0 : g.lostUs >= g.maxUs && g.maxUs > 500,
      JSON.stringify(g),
    );
    assert(g.lostUs <= g.spunMs * 1000, JSON.stringify(g));
  }
});

test("host_gaps output: lines that are not a CPU's record are skipped", () => {
  const text =
    "cpu 1 rt 0 spun_ms 800 gaps_500us 2 gaps_1ms 1 gaps_3ms 0 max_us 1200 lost_us 1900\n" +
    "warning: something\ncpu 0 rt 1 spun_ms 800 gaps_500us 0 gaps_1ms 0 gaps_3ms 0 max_us 0 lost_us 0\n";
  assertEquals(parseHostGaps(text), [
    {
      cpu: 0,
      realtime: true,
      spunMs: 800,
      over500us: 0,
      over1ms: 0,
      over3ms: 0,
      maxUs: 0,
      lostUs: 0,
    },
    {
      cpu: 1,
      realtime: false,
      spunMs: 800,
      over500us: 2,
      over1ms: 1,
      over3ms: 0,
      maxUs: 1200,
      lostUs: 1900,
    },
  ]);
});
