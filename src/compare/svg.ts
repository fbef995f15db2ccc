/**
 * The little SVG the compare report's charts are drawn with: escaping, plot frames and axes
 * (linear or log), and the mapping from data to pixels that the charts and their tests share.
 *
 * @module
 */

/** A plot area, px, in its section's coordinates. */
export interface Frame {
  /** Left edge. */
  x: number;
  /** Top edge. */
  y: number;
  /** Width. */
  w: number;
  /** Height. */
  h: number;
}

/** An axis's domain. */
export interface Axis {
  /** Value at the left (x) or bottom (y) edge. */
  min: number;
  /** Value at the right or top edge. */
  max: number;
  /** Log scale (base 10; `min` > 0). */
  log?: boolean;
}

/** Chart background. */
export const BACKGROUND = "#ffffff";
/** Plot area background. */
export const PLOT_BACKGROUND = "#f7f7f7";
/** Grid lines. */
export const GRID = "#dddddd";
/** Text. */
export const INK = "#222222";

/** Escapes text for SVG/HTML. */
export function esc(s: string): string {
  return s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;");
}

/** A number with at most 2 decimals, for attributes. */
export function n(v: number): string {
  return String(Math.round(v * 100) / 100);
}

function unit(axis: Axis, v: number): number {
  if (axis.log) {
    const lo = Math.log10(axis.min), hi = Math.log10(axis.max);
    return (Math.log10(Math.max(v, axis.min)) - lo) / (hi - lo);
  }
  return (v - axis.min) / (axis.max - axis.min);
}

/** x (px) of value `v` on a horizontal axis spanning `frame`, clamped to it. */
export function xAt(frame: Frame, axis: Axis, v: number): number {
  return frame.x + Math.min(1, Math.max(0, unit(axis, v))) * frame.w;
}

/** y (px) of value `v` on a vertical axis spanning `frame` (min at the bottom), clamped. */
export function yAt(frame: Frame, axis: Axis, v: number): number {
  return frame.y + frame.h - Math.min(1, Math.max(0, unit(axis, v))) * frame.h;
}

/** A "nice" upper bound for data up to `v` (1, 2, 2.5 or 5 times a power of ten). */
export function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** Tick values of an axis: round steps (1, 2, 2.5 or 5 times a power of ten), or powers of ten. */
export function ticks(axis: Axis): number[] {
  if (axis.log) {
    const out: number[] = [];
    for (let p = Math.ceil(Math.log10(axis.min)); 10 ** p <= axis.max * 1.0001; p++) {
      out.push(10 ** p);
    }
    return out;
  }
  const step = niceMax((axis.max - axis.min) / 5);
  const out: number[] = [];
  for (let k = Math.ceil(axis.min / step); k * step <= axis.max + step * 1e-9; k++) {
    out.push(k * step);
  }
  return out;
}

/** A tick label: short, no trailing zeros. */
export function tickLabel(v: number): string {
  if (Math.abs(v) >= 1e6) return `${v / 1e6}M`;
  if (Math.abs(v) >= 1e4) return `${v / 1e3}k`;
  return String(Math.round(v * 100) / 100);
}

/** Text at (x, y). */
export function text(
  x: number,
  y: number,
  s: string,
  o: { size?: number; anchor?: "start" | "middle" | "end"; bold?: boolean; fill?: string } = {},
): string {
  return `<text x="${n(x)}" y="${n(y)}" font-size="${o.size ?? 11}" text-anchor="${
    o.anchor ?? "start"
  }"${o.bold ? ' font-weight="bold"' : ""} fill="${o.fill ?? INK}">${esc(s)}</text>`;
}

/**
 * The plot area's background, grid and tick labels: `x` along the bottom, `y` up the left
 * (either may be omitted, for bar charts with rows), and axis titles.
 */
export function axes(
  f: Frame,
  o: { x?: Axis; y?: Axis; xTitle?: string; yTitle?: string },
): string {
  const out = [
    `<rect x="${n(f.x)}" y="${n(f.y)}" width="${n(f.w)}" height="${
      n(f.h)
    }" fill="${PLOT_BACKGROUND}"/>`,
  ];
  if (o.x) {
    for (const t of ticks(o.x)) {
      const x = xAt(f, o.x, t);
      out.push(
        `<line x1="${n(x)}" y1="${n(f.y)}" x2="${n(x)}" y2="${n(f.y + f.h)}" stroke="${GRID}"/>`,
      );
      out.push(text(x, f.y + f.h + 13, tickLabel(t), { size: 10, anchor: "middle" }));
    }
    if (o.xTitle) {
      out.push(text(f.x + f.w / 2, f.y + f.h + 27, o.xTitle, { size: 10, anchor: "middle" }));
    }
  }
  if (o.y) {
    for (const t of ticks(o.y)) {
      const y = yAt(f, o.y, t);
      out.push(
        `<line x1="${n(f.x)}" y1="${n(y)}" x2="${n(f.x + f.w)}" y2="${n(y)}" stroke="${GRID}"/>`,
      );
      out.push(text(f.x - 4, y + 3, tickLabel(t), { size: 10, anchor: "end" }));
    }
    if (o.yTitle) {
      out.push(
        `<text transform="translate(${n(f.x - 32)} ${
          n(f.y + f.h / 2)
        }) rotate(-90)" font-size="10" text-anchor="middle" fill="${INK}">${esc(o.yTitle)}</text>`,
      );
    }
  }
  return out.join("");
}

/** A polyline through `points` (px). */
export function polyline(
  points: [number, number][],
  stroke: string,
  o: { width?: number; dash?: string } = {},
): string {
  return `<polyline fill="none" stroke="${stroke}" stroke-width="${o.width ?? 2}"${
    o.dash ? ` stroke-dasharray="${o.dash}"` : ""
  } stroke-linejoin="round" points="${points.map(([x, y]) => `${n(x)},${n(y)}`).join(" ")}"/>`;
}

/** A filled rectangle. */
export function rect(x: number, y: number, w: number, h: number, fill: string): string {
  return `<rect x="${n(x)}" y="${n(y)}" width="${n(Math.max(0, w))}" height="${
    n(h)
  }" fill="${fill}"/>`;
}

/** A filled circle. */
export function dot(x: number, y: number, r: number, fill: string): string {
  return `<circle cx="${n(x)}" cy="${n(y)}" r="${n(r)}" fill="${fill}"/>`;
}
