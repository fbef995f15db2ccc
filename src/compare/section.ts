/**
 * One scenario's part of the compare report: its name, description and verdict, then its
 * charts, laid out in one SVG of known size. The runs of each plugin are aggregated here: mean
 * shares per window over the runs, wake-latency CDFs merged over VMs and runs, mean slot use,
 * misses summed over runs, and each run's headline value.
 *
 * @module
 */
import { vmColor } from "../trace/timeline_svg.ts";
import type { Scenario } from "../scenario/scenario.ts";
import { mergeCdfs } from "./cdf.ts";
import {
  cdfChart,
  type Chart,
  missChart,
  pluginColor,
  shareChart,
  type ShareLine,
  slotChart,
  spreadChart,
} from "./charts.ts";
import type { CompareData, CompareRun } from "./run.ts";
import { runsOf } from "./markdown.ts";
import { BACKGROUND, esc, niceMax, rect, text } from "./svg.ts";
import { type ScenarioVerdict, shareTargets } from "./verdict.ts";

/** Width of the report's sections, px. */
export const SECTION_WIDTH = 1100;

/** A scenario's section. */
export interface Section {
  /** Scenario name. */
  scenario: string;
  /** Height, px (width is {@linkcode SECTION_WIDTH}). */
  height: number;
  /** Its charts, positions in the section's coordinates. */
  charts: Chart[];
  /** The standalone `<svg>` element. */
  svg: string;
}

const SHARE_COLS = 4;
const SHARE_PANEL_H = 165;
const BAR_ROW_H = 26;

function mean(xs: number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0;
}

/** Each VM's mean share (%) per window over the runs, and its mean target. */
function shareLines(s: Scenario, runs: CompareRun[]): ShareLine[] {
  return s.vms.map((vm, i) => {
    const series = runs.map((r) => r.result.vms.find((v) => v.name === vm.name)?.windows ?? []);
    const len = Math.min(...series.map((x) => x.length));
    const points: [number, number][] = [];
    for (let w = 0; w < len; w++) points.push([w + 1, 100 * mean(series.map((x) => x[w]))]);
    const targets = runs.map((r) => shareTargets(s, r.result)[vm.name]).filter((t) =>
      t !== undefined
    );
    return {
      vm: vm.name,
      color: vmColor(i),
      points,
      ...(targets.length ? { target: 100 * mean(targets as number[]) } : {}),
    };
  });
}

/** Up to `lines` lines of at most `chars` characters, broken at spaces; the last one clipped. */
function wrap(s: string, chars: number, lines: number): string[] {
  const out: string[] = [];
  let rest = s;
  while (rest.length > chars && out.length < lines - 1) {
    const cut = rest.lastIndexOf(" ", chars);
    const at = cut > 0 ? cut : chars;
    out.push(rest.slice(0, at));
    rest = rest.slice(at).trimStart();
  }
  out.push(clip(rest, chars));
  return out;
}

function clip(s: string, chars: number): string {
  return s.length > chars ? `${s.slice(0, chars - 1)}…` : s;
}

/** Lays out a scenario's section. */
export function scenarioSection(
  data: CompareData,
  s: Scenario,
  verdict: ScenarioVerdict,
): Section {
  const W = SECTION_WIDTH;
  const runs = data.runs.filter((r) => r.scenario === s.name);
  const plugins = data.plugins.map((p, i) => ({
    name: p.name,
    color: pluginColor(i),
    runs: runs.filter((r) => r.plugin === p.name),
  }));
  const charts: Chart[] = [];
  const head: string[] = [
    text(12, 28, s.name, { size: 20, bold: true }),
    text(12, 48, clip(s.description, 175), { size: 11 }),
    ...wrap(`Verdict: ${verdict.line}`, 150, 2).map((l, i) =>
      text(12, 68 + i * 15, l, { size: 12, bold: true })
    ),
  ];

  // Share over time, a panel per plugin.
  let y = 115;
  head.push(
    text(
      12,
      y,
      "Each VM's share of the slots per 1 s window (mean over the runs) and its target (dashed)",
      {
        size: 12,
        bold: true,
      },
    ),
  );
  s.vms.slice(0, 12).forEach((vm, i) => {
    const lx = 640 + (i % 6) * 76, ly = y - 18 + Math.floor(i / 6) * 13;
    head.push(
      rect(lx, ly - 8, 9, 9, vmColor(i)),
      text(lx + 12, ly, clip(vm.name, 9), { size: 10 }),
    );
  });
  const all = plugins.map((p) => ({ p, lines: shareLines(s, p.runs) }));
  const yMax = niceMax(
    Math.max(
      ...all.flatMap((a) => a.lines.flatMap((l) => [...l.points.map((q) => q[1]), l.target ?? 0])),
    ),
  );
  const top = y + 12;
  all.forEach(({ p, lines }, i) => {
    const col = i % SHARE_COLS, row = Math.floor(i / SHARE_COLS);
    const pw = W / SHARE_COLS;
    const frame = { x: col * pw + 45, y: top + row * SHARE_PANEL_H + 24, w: pw - 60, h: 105 };
    charts.push(shareChart(frame, p.name, lines, { seconds: s.seconds, yMax }));
  });
  y = top + Math.ceil(plugins.length / SHARE_COLS) * SHARE_PANEL_H + 20;

  // Wake-latency CDFs and slot use.
  const cdfLines = plugins.flatMap((p) => {
    const c = mergeCdfs(p.runs.flatMap((r) => Object.values(r.wake)));
    return c.count ? [{ plugin: p.name, color: p.color, points: c.points }] : [];
  });
  const barsH = BAR_ROW_H * plugins.length;
  const rowH = Math.max(200, barsH);
  charts.push(cdfChart({ x: 70, y: y + 24, w: 430, h: rowH }, cdfLines));
  charts.push(
    slotChart(
      { x: 640, y: y + 24, w: W - 640 - 20, h: barsH },
      plugins.map((p) => ({
        plugin: p.name,
        shares: s.vms.map((vm, i) => ({
          vm: vm.name,
          color: vmColor(i),
          share: 100 *
            mean(p.runs.map((r) => r.result.vms.find((v) => v.name === vm.name)?.share ?? 0)),
        })),
      })),
    ),
  );
  y += 24 + rowH + 45;

  // The spread of the headline across runs, and deadline misses.
  const periodic = s.vms.filter((v) => v.workload.kind === "periodic").map((v) => v.name);
  const h = verdict.headline;
  if (h || periodic.length) {
    if (h) {
      charts.push(
        spreadChart(
          { x: 110, y: y + 24, w: 400, h: barsH },
          plugins.map((p) => ({
            plugin: p.name,
            color: p.color,
            values: verdict.plugins.find((v) => v.plugin === p.name)?.headline ?? [],
          })),
          {
            what: h.what,
            unit: h.unit,
            limit: h.limit,
            runs: runsOf(data),
          },
        ),
      );
    }
    if (periodic.length) {
      const sum = (p: (typeof plugins)[number], f: "misses" | "jobs") =>
        p.runs.reduce(
          (a, r) =>
            a + r.result.vms.filter((v) => periodic.includes(v.name)).reduce((b, v) => b + v[f], 0),
          0,
        );
      charts.push(
        missChart(
          { x: 640, y: y + 24, w: W - 640 - 80, h: barsH },
          plugins.map((p) => ({
            plugin: p.name,
            color: p.color,
            misses: sum(p, "misses"),
            jobs: sum(p, "jobs"),
          })),
        ),
      );
    }
    y += 24 + barsH + 45;
  }
  const height = Math.ceil(y);
  const svg =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}" font-family="sans-serif" role="img" aria-label="${
      esc(s.name)
    }">${rect(0, 0, W, height, BACKGROUND)}${head.join("")}${
      charts.map((c) => c.svg).join("")
    }</svg>`;
  return { scenario: s.name, height, charts, svg };
}
