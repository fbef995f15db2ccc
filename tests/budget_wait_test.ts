/**
 * The sandboxes' budget rule (`waitWithinBudget`): an overrun counts as a loop only once the
 * plugin has computed through `BUSY_WINDOWS` half-budget windows in a row past its budget; a
 * burst of computing (garbage collection, compiling) that then answers is waited for.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { BUSY_WINDOWS, waitWithinBudget } from "../src/sched/sandbox_port.ts";

const cell = new Int32Array(new SharedArrayBuffer(4));
const sleep = (ms: number) => void Atomics.wait(cell, 0, 0, Math.max(0, ms));

/** A plugin computing all along from `t0`, answering at `answerAtMs` (Infinity: never). */
function computing(t0: number, answerAtMs: number) {
  return {
    budgetMs: 20,
    answered: () => performance.now() - t0 >= answerAtMs,
    sleep,
    cpuNs: () => (performance.now() - t0) * 1e6,
  };
}

Deno.test("budget: a call computing 25 ms past its 20 ms budget, then answering, is not a loop", () => {
  // The old rule judged it at 30 ms (one half-budget window past the budget) and ejected it.
  const t0 = performance.now();
  assertEquals(waitWithinBudget(computing(t0, 45), t0), null);
});

Deno.test("budget: a call computing all along is a loop after BUSY_WINDOWS half budgets past it", () => {
  const t0 = performance.now();
  const o = waitWithinBudget(computing(t0, Infinity), t0);
  assert(o !== null && o.busy, JSON.stringify(o));
  assert(o.waitedMs >= 20 + BUSY_WINDOWS * 10, `judged after ${o.waitedMs} ms`);
  assert(o.waitedMs < 2000, `judged after ${o.waitedMs} ms, not as a starved plugin`);
});

Deno.test("budget: a plugin starved of CPU (not computing) is waited for, past the busy windows", () => {
  const t0 = performance.now();
  const w = { ...computing(t0, 150), cpuNs: () => 0 };
  assertEquals(waitWithinBudget(w, t0), null);
});
