/**
 * The compare report, rendered by a real browser as the timeline test does it: headless Chromium
 * loads the HTML file, logs nothing on its console (the report's Content-Security-Policy forbids
 * every load, so a fetch would show there), and its screenshot has each chart's colours where
 * the data puts them. One comparison is made by hand (known numbers); one is a simulator run.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import {
  assertColor,
  capture,
  decodePng,
  type Image,
  near,
  pixel,
  rgbOf,
} from "./helpers/chromium.ts";
import { test } from "./helpers/deadline.ts";
import { compare, type CompareData, type CompareRun } from "../mod.ts";
import { type CompareHtml, compareHtml } from "../src/compare/html.ts";
import { UNUSED_COLOR } from "../src/compare/charts.ts";
import { PLOT_BACKGROUND, xAt, yAt } from "../src/compare/svg.ts";
import { vmColor } from "../src/trace/timeline_svg.ts";
import { parseScenario } from "../src/scenario/scenario.ts";
import type { VmOutcome } from "../src/scenario/result.ts";
import { pluginColor } from "../src/compare/charts.ts";

/** Writes the report, loads it in Chromium at its charts' size; the screenshot and console. */
async function render(report: CompareHtml): Promise<{ img: Image; console: string[] }> {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/compare.html`;
    await Deno.writeTextFile(file, report.html);
    const { width, chartsHeight } = report.layout;
    const shot = await capture(`file://${file}`, width, chartsHeight);
    return { img: await decodePng(shot.png), console: shot.console };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Pixels of colour `hex` in a rectangle. */
function countColor(
  img: Image,
  r: { x: number; y: number; w: number; h: number },
  hex: string,
): number {
  let k = 0;
  for (let y = Math.floor(r.y); y < r.y + r.h; y++) {
    for (let x = Math.floor(r.x); x < r.x + r.w; x++) {
      if (near(pixel(img, x, y), rgbOf(hex), 6)) k++;
    }
  }
  return k;
}

function outcome(name: string, o: Partial<VmOutcome>): VmOutcome {
  return {
    name,
    workload: "spin",
    weight: 256,
    share: 0,
    shareMin: 0,
    shareMax: 0,
    vmShare: 0,
    vmShareMin: 0,
    vmShareMax: 0,
    p50Us: NaN,
    p99Us: NaN,
    throughput: 0,
    unit: "",
    misses: 0,
    jobs: 0,
    ...o,
  };
}

/** Two plugins on one scenario (two weighted hogs and a periodic VM), two seeds, by hand. */
function handmade(): CompareData {
  const scenario = parseScenario({
    name: "made",
    description: "Two weighted hogs and a periodic VM on one slot.",
    slots: 1,
    seconds: 4,
    vms: [
      { name: "a", workload: { kind: "spin" }, sched: { weight: 256 } },
      { name: "b", workload: { kind: "spin" }, sched: { weight: 512 } },
      { name: "p", workload: { kind: "periodic", periodMs: 10, computeMs: 1 } },
    ],
  }, "made.json");
  const run = (
    plugin: string,
    seed: number,
    shares: [number, number, number],
    misses: number,
    wake: [number, number][],
  ): CompareRun => ({
    scenario: "made",
    plugin,
    run: seed,
    result: {
      scenario: "made",
      mode: "sim",
      policy: plugin,
      slots: 1,
      seconds: 4,
      jain: 1,
      ejections: [],
      date: "2026-01-01T00:00:00Z",
      vms: ["a", "b", "p"].map((name, i) =>
        outcome(name, {
          share: shares[i],
          windows: [shares[i], shares[i], shares[i], shares[i]],
          ...(name === "p" ? { workload: "periodic", misses, jobs: 400 } : {}),
        })
      ),
    },
    wake: { p: { count: 400, points: wake } },
  });
  const alphaWake: [number, number][] = [[10, 0.5], [100, 1]];
  const betaWake: [number, number][] = [[1000, 0.5], [10000, 1]];
  return {
    mode: "sim",
    seeds: 2,
    plugins: [
      { name: "alpha", source: "alpha.ts", builtin: false },
      { name: "beta", source: "beta.ts", builtin: true },
    ],
    scenarios: [scenario],
    runs: [
      run("alpha", 1, [0.2, 0.4, 0.1], 0, alphaWake),
      run("beta", 1, [0.3, 0.3, 0.05], 120, betaWake),
      run("alpha", 2, [0.2, 0.4, 0.1], 0, alphaWake),
      run("beta", 2, [0.3, 0.3, 0.05], 80, betaWake),
    ],
    date: "2026-01-01T00:00:00Z",
  };
}

test("compare report in Chromium: the console check sees a blocked load", async () => {
  // The check the report tests rely on can fail: a page under the report's policy that tries
  // to load an image logs the refusal on the console.
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/bad.html`,
      `<!doctype html><meta http-equiv="Content-Security-Policy" content="default-src 'none'"><img src="http://127.0.0.1:9/x.png">`,
    );
    const shot = await capture(`file://${dir}/bad.html`, 200, 100);
    assert(
      shot.console.some((l) => l.includes("Content Security Policy")),
      shot.console.join("\n"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

test("compare report in Chromium: colours where the data puts them (runs by hand)", async () => {
  const report = compareHtml(handmade());
  const { img, console } = await render(report);
  assertEquals(console, []);
  assertEquals([img.width, img.height], [report.layout.width, report.layout.chartsHeight]);
  for (const l of report.layout.legend) {
    assertColor(img, l.x + l.size / 2, l.y + l.size / 2, l.color, `legend ${l.plugin}`);
  }
  assertEquals(report.layout.legend.map((l) => l.color), [pluginColor(0), pluginColor(1)]);
  const [{ top, section }] = report.layout.sections;
  assertEquals(
    section.charts.map((c) => c.kind),
    ["share", "share", "cdf", "slots", "spread", "misses"],
  );
  const at = (x: number, y: number, hex: string, what: string) =>
    assertColor(img, x, top + y, hex, what);

  // Share over time: each VM's dot at each window, at its share (alpha: 20 / 40 / 10 %).
  for (const c of section.charts) {
    if (c.kind !== "share") continue;
    const want = c.plugin === "alpha" ? [20, 40, 10] : [30, 30, 5];
    const vms = c.plugin === "alpha" ? [0, 1, 2] : [1, 2]; // beta's a and b overlap: b on top
    for (const i of vms) {
      for (const t of [1, 2, 3, 4]) {
        at(
          xAt(c.frame, c.x, t),
          yAt(c.frame, c.y, want[i]),
          vmColor(i),
          `${c.plugin} vm ${i} at ${t} s`,
        );
      }
    }
  }
  // CDF: alpha holds 0.5 between 10 and 100 µs, beta between 1 and 10 ms.
  const cdf = section.charts.find((c) => c.kind === "cdf")!;
  assertEquals([cdf.x.min, cdf.x.max], [10, 10000]);
  at(xAt(cdf.frame, cdf.x, 31.6), yAt(cdf.frame, cdf.y, 0.5), pluginColor(0), "alpha's CDF at 0.5");
  at(xAt(cdf.frame, cdf.x, 3162), yAt(cdf.frame, cdf.y, 0.5), pluginColor(1), "beta's CDF at 0.5");
  at(
    xAt(cdf.frame, cdf.x, 3162),
    yAt(cdf.frame, cdf.y, 0.75),
    PLOT_BACKGROUND,
    "above beta's step",
  );
  // Slot use: a, b, p stacked, then grey.
  const slots = section.charts.find((c) => c.kind === "slots")!;
  for (const row of slots.rows) {
    const edges = row.plugin === "alpha" ? [0, 20, 60, 70, 100] : [0, 30, 60, 65, 100];
    const cy = row.y + row.h / 2;
    for (let i = 0; i < 4; i++) {
      const mid = (edges[i] + edges[i + 1]) / 2;
      at(
        xAt(slots.frame, slots.x, mid),
        cy,
        i < 3 ? vmColor(i) : UNUSED_COLOR,
        `${row.plugin} slot ${mid} %`,
      );
    }
  }
  // Deadline misses: beta 200 of 800 jobs (25 %), alpha none.
  const misses = section.charts.find((c) => c.kind === "misses")!;
  assertEquals(misses.rows.map((r) => [r.plugin, r.value]), [["alpha", 0], ["beta", 25]]);
  for (const r of misses.rows) {
    at(
      xAt(misses.frame, misses.x, 12.5),
      r.y + r.h / 2,
      r.plugin === "beta" ? pluginColor(1) : PLOT_BACKGROUND,
      `${r.plugin}'s miss bar at 12.5 %`,
    );
  }
  // Spread: each seed's miss ratio a dot (beta 30 % and 20 %), on the plugin's row.
  const spread = section.charts.find((c) => c.kind === "spread")!;
  const lx = xAt(spread.frame, spread.x, spread.limit);
  for (const r of spread.rows) {
    const want = r.plugin === "alpha" ? [0, 0] : [30, 20];
    assertEquals(r.values, want);
    for (const v of want) {
      const cx = xAt(spread.frame, spread.x, v); // beside the centre, away from the goal's line
      at(cx + (lx > cx ? -2 : 2), r.y + r.h / 2, r.color, `${r.plugin} seed at ${v} %`);
    }
  }
});

test("compare report in Chromium: a simulator run renders with every chart drawn", async () => {
  const data = await compare({
    plugins: [new URL("../plugins/rr.ts", import.meta.url).pathname],
    builtins: ["credit"],
    scenarios: ["io-vs-hog", "rt"],
    seeds: 2,
    seconds: 2,
  });
  const report = compareHtml(data);
  const { img, console } = await render(report);
  assertEquals(console, []);
  assertEquals(report.layout.sections.map((s) => s.section.scenario), ["io-vs-hog", "rt"]);
  for (const { top, section } of report.layout.sections) {
    const what = (s: string) => `${section.scenario}: ${s}`;
    const at = (x: number, y: number, hex: string, w: string) =>
      assertColor(img, x, top + y, hex, what(w));
    // Slot use: every segment wide enough to hit, in its VM's colour.
    const slots = section.charts.find((c) => c.kind === "slots")!;
    assertEquals(slots.rows.map((r) => r.plugin), ["rr", "credit"]);
    for (const row of slots.rows) {
      for (const [i, s] of row.segments.entries()) {
        const x0 = xAt(slots.frame, slots.x, s.from), x1 = xAt(slots.frame, slots.x, s.to);
        if (x1 - x0 >= 6) {
          at((x0 + x1) / 2, row.y + row.h / 2, vmColor(i), `${row.plugin} ${s.vm} slot`);
        }
      }
    }
    // Wake-latency CDFs: a line of each plugin's colour in the plot.
    const cdf = section.charts.find((c) => c.kind === "cdf")!;
    assertEquals(cdf.lines.map((l) => l.plugin), ["rr", "credit"]);
    for (const l of cdf.lines) {
      const f = { ...cdf.frame, y: top + cdf.frame.y };
      const k = countColor(img, f, l.color);
      assert(k > 60, what(`${l.plugin}'s CDF: ${k} pixels`));
    }
    // Spread: each run's headline value a dot.
    const spread = section.charts.find((c) => c.kind === "spread")!;
    const lx = xAt(spread.frame, spread.x, spread.limit);
    for (const r of spread.rows) {
      assertEquals(r.values.length, 2);
      for (const v of r.values) {
        const cx = xAt(spread.frame, spread.x, v);
        at(cx + (lx > cx ? -2 : 2), r.y + r.h / 2, r.color, `${r.plugin} run at ${v}`);
      }
    }
  }
  // rt has periodic VMs: its misses chart has rr's bar (rr misses deadlines there).
  const rt = report.layout.sections[1];
  const misses = rt.section.charts.find((c) => c.kind === "misses")!;
  const rr = misses.rows.find((r) => r.plugin === "rr")!;
  assert(rr.misses > 0, `rr missed ${rr.misses}`);
  const end = xAt(misses.frame, misses.x, rr.value);
  assertColor(
    img,
    (misses.frame.x + end) / 2,
    rt.top + rr.y + rr.h / 2,
    rr.color,
    "rt: rr's miss bar",
  );
  // io-vs-hog: echo (5 %) and the hog (about 90 %) under each plugin, far apart: their dots.
  const io = report.layout.sections[0];
  for (const c of io.section.charts) {
    if (c.kind !== "share") continue;
    for (const [i, l] of c.lines.entries()) {
      for (const [t, v] of l.points) {
        assertColor(
          img,
          xAt(c.frame, c.x, t),
          io.top + yAt(c.frame, c.y, v),
          vmColor(i),
          `io-vs-hog ${c.plugin} ${l.vm} at ${t} s`,
        );
      }
    }
  }
});
