/**
 * The compare report's five charts, each a model (where every mark is, in px, and the data it
 * stands for) with its SVG: each VM's share over time against its target, wake-latency CDFs,
 * slot use, deadline misses, and the spread of the goal's headline value across runs.
 *
 * @module
 */
import {
  axes,
  type Axis,
  dot,
  type Frame,
  INK,
  niceMax,
  polyline,
  rect,
  text,
  xAt,
  yAt,
} from "./svg.ts";

/** Colours the plugins take, in the report's order (ColorBrewer Dark2, then grey). */
export const PLUGIN_PALETTE = [
  "#1b9e77",
  "#d95f02",
  "#7570b3",
  "#e7298a",
  "#66a61e",
  "#e6ab02",
  "#a6761d",
  "#666666",
] as const;

/** Colour of plugin `i`. */
export function pluginColor(i: number): string {
  return PLUGIN_PALETTE[i % PLUGIN_PALETTE.length];
}

/** Slot time no VM got (idle, hand-offs, the scheduler) in the slot-use chart. */
export const UNUSED_COLOR = "#d9d9d9";

/** One VM's share per window in one plugin's panel. */
export interface ShareLine {
  /** VM name. */
  vm: string;
  /** Its colour (`vmColor` of its index in the scenario, as the timeline colours VMs). */
  color: string;
  /** `[window end, s; share of the slots, %]`. */
  points: [number, number][];
  /** Its target share (%), if the goal sets one. */
  target?: number;
}

/** Each VM's share over time under one plugin, against its target. */
export interface ShareChart {
  /** Kind tag. */
  kind: "share";
  /** Plugin label. */
  plugin: string;
  /** Plot area. */
  frame: Frame;
  /** Time, s. */
  x: Axis;
  /** Share of the slots, %. */
  y: Axis;
  /** Per VM. */
  lines: ShareLine[];
  /** Its SVG. */
  svg: string;
}

/** One plugin's wake-latency distribution. */
export interface CdfLine {
  /** Plugin label. */
  plugin: string;
  /** Its colour. */
  color: string;
  /** `[µs, fraction <= µs]`. */
  points: [number, number][];
}

/** Wake-latency CDFs, one line per plugin. */
export interface CdfChart {
  /** Kind tag. */
  kind: "cdf";
  /** Plot area. */
  frame: Frame;
  /** Latency, µs (log). */
  x: Axis;
  /** Fraction of wakes. */
  y: Axis;
  /** Per plugin with wakes. */
  lines: CdfLine[];
  /** Its SVG. */
  svg: string;
}

/** A horizontal bar row of a plugin, px. */
export interface BarRow {
  /** Plugin label. */
  plugin: string;
  /** Top. */
  y: number;
  /** Height. */
  h: number;
}

/** How each plugin's slots were used: each VM's share, and what no VM got. */
export interface SlotChart {
  /** Kind tag. */
  kind: "slots";
  /** Plot area. */
  frame: Frame;
  /** Share of the slots, % (0-100). */
  x: Axis;
  /** Per plugin: its stacked segments, `from`/`to` in %. */
  rows: (BarRow & { segments: { vm: string; color: string; from: number; to: number }[] })[];
  /** Its SVG. */
  svg: string;
}

/** Deadline misses of the periodic VMs, per plugin. */
export interface MissChart {
  /** Kind tag. */
  kind: "misses";
  /** Plot area. */
  frame: Frame;
  /** Misses, % of jobs. */
  x: Axis;
  /** Per plugin. */
  rows: (BarRow & { value: number; misses: number; jobs: number; color: string })[];
  /** Its SVG. */
  svg: string;
}

/** The goal's headline value of every run, per plugin: the spread across seeds or runs. */
export interface SpreadChart {
  /** Kind tag. */
  kind: "spread";
  /** Plot area. */
  frame: Frame;
  /** The headline value. */
  x: Axis;
  /** The goal's limit on it. */
  limit: number;
  /** Per plugin: one value per run. */
  rows: (BarRow & { values: number[]; color: string })[];
  /** Its SVG. */
  svg: string;
}

/** Any chart of the report. */
export type Chart = ShareChart | CdfChart | SlotChart | MissChart | SpreadChart;

function title(f: Frame, s: string): string {
  return text(f.x, f.y - 8, s, { size: 12, bold: true });
}

/** Share over time: one VM's line per colour, its target dashed in the same colour. */
export function shareChart(
  frame: Frame,
  plugin: string,
  lines: ShareLine[],
  o: { seconds: number; yMax: number },
): ShareChart {
  const x: Axis = { min: 0, max: o.seconds };
  const y: Axis = { min: 0, max: o.yMax };
  const svg = [title(frame, plugin), axes(frame, { x, y, xTitle: "s" })];
  for (const l of lines) {
    if (l.target !== undefined) {
      const ty = yAt(frame, y, l.target);
      svg.push(
        polyline([[frame.x, ty], [frame.x + frame.w, ty]], l.color, { width: 1.5, dash: "5 3" }),
      );
    }
  }
  for (const l of lines) {
    const px = l.points.map(([t, v]): [number, number] => [xAt(frame, x, t), yAt(frame, y, v)]);
    if (px.length > 1) svg.push(polyline(px, l.color, { width: 2 }));
    for (const [cx, cy] of px) svg.push(dot(cx, cy, 3.5, l.color));
  }
  return { kind: "share", plugin, frame, x, y, lines, svg: svg.join("") };
}

/** Wake-latency CDFs on a log time axis. */
export function cdfChart(frame: Frame, lines: CdfLine[]): CdfChart {
  const all = lines.flatMap((l) => l.points.map((p) => p[0])).filter((v) => v > 0);
  // From 1 µs at least: shorter wakes (the simulator's immediate ones) sit on the left edge.
  const lo = all.length ? Math.max(1, 10 ** Math.floor(Math.log10(Math.min(...all)))) : 1;
  const hi = all.length ? 10 ** Math.ceil(Math.log10(Math.max(...all))) : 10;
  const x: Axis = { min: lo, max: Math.max(hi, lo * 10), log: true };
  const y: Axis = { min: 0, max: 1 };
  const svg = [
    title(frame, "Wake latency (wake to grant), CDF over every VM that woke"),
    axes(frame, { x, y, xTitle: "µs (log)", yTitle: "fraction of wakes" }),
  ];
  if (!lines.length) {
    svg.push(text(frame.x + frame.w / 2, frame.y + frame.h / 2, "no VM woke in this scenario", {
      anchor: "middle",
      size: 12,
    }));
  }
  lines.forEach((l, i) => {
    // A step function: the fraction holds until the next value.
    const px: [number, number][] = [];
    let prev = 0;
    for (const [v, q] of l.points) {
      const xv = xAt(frame, x, v);
      px.push([xv, yAt(frame, y, prev)], [xv, yAt(frame, y, q)]);
      prev = q;
    }
    px.push([frame.x + frame.w, yAt(frame, y, prev)]);
    svg.push(polyline(px, l.color, { width: 2.5 }));
    const ly = frame.y + frame.h - 12 - i * 14;
    svg.push(rect(frame.x + frame.w - 110, ly - 8, 10, 10, l.color));
    svg.push(text(frame.x + frame.w - 96, ly + 1, l.plugin, { size: 10 }));
  });
  return { kind: "cdf", frame, x, y, lines, svg: svg.join("") };
}

function rowsOf(frame: Frame, plugins: string[]): BarRow[] {
  const band = frame.h / Math.max(1, plugins.length);
  return plugins.map((plugin, i) => ({
    plugin,
    y: frame.y + i * band + band * 0.15,
    h: band * 0.7,
  }));
}

function rowLabels(frame: Frame, rows: BarRow[]): string {
  return rows.map((r) => text(frame.x - 6, r.y + r.h / 2 + 4, r.plugin, { anchor: "end" })).join(
    "",
  );
}

/** Slot use: per plugin a bar of each VM's share of the slots, stacked, then what was left. */
export function slotChart(
  frame: Frame,
  rows: { plugin: string; shares: { vm: string; color: string; share: number }[] }[],
): SlotChart {
  const x: Axis = { min: 0, max: 100 };
  const bars = rowsOf(frame, rows.map((r) => r.plugin));
  const svg = [title(frame, "Slot use: each VM's share of the slots, and what no VM got (grey)")];
  svg.push(axes(frame, { x, xTitle: "% of the slots" }), rowLabels(frame, bars));
  const out: SlotChart["rows"] = rows.map((r, i) => {
    let at = 0;
    const segments = r.shares.map((s) => {
      const seg = { vm: s.vm, color: s.color, from: at, to: Math.min(100, at + s.share) };
      at = seg.to;
      return seg;
    });
    const b = bars[i];
    svg.push(rect(frame.x, b.y, frame.w, b.h, UNUSED_COLOR));
    for (const s of segments) {
      svg.push(
        rect(xAt(frame, x, s.from), b.y, xAt(frame, x, s.to) - xAt(frame, x, s.from), b.h, s.color),
      );
    }
    return { ...b, segments };
  });
  return { kind: "slots", frame, x, rows: out, svg: svg.join("") };
}

/** Deadline misses per plugin, % of the periodic VMs' jobs, with the counts. */
export function missChart(
  frame: Frame,
  rows: { plugin: string; color: string; misses: number; jobs: number }[],
): MissChart {
  const values = rows.map((r) => (r.jobs > 0 ? (100 * r.misses) / r.jobs : 0));
  const x: Axis = { min: 0, max: niceMax(Math.max(...values, 1)) };
  const bars = rowsOf(frame, rows.map((r) => r.plugin));
  const svg = [title(frame, "Deadline misses of the periodic VMs")];
  svg.push(axes(frame, { x, xTitle: "% of jobs missed" }), rowLabels(frame, bars));
  const out = rows.map((r, i) => {
    const b = bars[i];
    const w = xAt(frame, x, values[i]) - frame.x;
    svg.push(rect(frame.x, b.y, w, b.h, r.color));
    svg.push(text(frame.x + w + 4, b.y + b.h / 2 + 4, `${r.misses} / ${r.jobs}`, { size: 10 }));
    return { ...b, value: values[i], misses: r.misses, jobs: r.jobs, color: r.color };
  });
  return { kind: "misses", frame, x, rows: out, svg: svg.join("") };
}

/** The headline value of every run, per plugin: dots, the range between them, the limit dashed. */
export function spreadChart(
  frame: Frame,
  rows: { plugin: string; color: string; values: number[] }[],
  o: { what: string; unit: string; limit: number; runs: string },
): SpreadChart {
  const finite = rows.flatMap((r) => r.values).filter(Number.isFinite);
  const lo = Math.min(0, ...finite);
  const x: Axis = { min: lo, max: niceMax(Math.max(...finite, o.limit, 1e-9) - lo) + lo };
  const bars = rowsOf(frame, rows.map((r) => r.plugin));
  const svg = [title(frame, `Spread across ${o.runs}: ${o.what}`)];
  svg.push(axes(frame, { x, xTitle: o.unit }), rowLabels(frame, bars));
  const lx = xAt(frame, x, o.limit);
  svg.push(polyline([[lx, frame.y], [lx, frame.y + frame.h]], INK, { width: 1.5, dash: "4 3" }));
  svg.push(text(lx + 3, frame.y + 10, "goal", { size: 10 }));
  const out = rows.map((r, i) => {
    const b = bars[i], cy = b.y + b.h / 2;
    const vs = r.values.filter(Number.isFinite);
    if (vs.length > 1) {
      svg.push(
        polyline(
          [[xAt(frame, x, Math.min(...vs)), cy], [xAt(frame, x, Math.max(...vs)), cy]],
          r.color,
          {
            width: 2,
          },
        ),
      );
    }
    for (const v of vs) svg.push(dot(xAt(frame, x, v), cy, 5, r.color));
    return { ...b, values: r.values, color: r.color };
  });
  return { kind: "spread", frame, x, limit: o.limit, rows: out, svg: svg.join("") };
}
