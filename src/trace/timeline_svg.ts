/**
 * A picture of a trace: slots by time, one row per slot, each grant a box in its VM's colour;
 * below, optionally, one row per vCPU (running solid, runnable pale, halted a thin line, wakes as
 * ticks); a time axis in ms, a legend and a title. The input is the Perfetto JSON that
 * {@linkcode toPerfetto} writes (and `--trace FILE` saves), read back as plain JSON, so any file
 * the exporter wrote can be drawn again later; the output is a standalone SVG 1.1 document
 * (`xmlns`, `width`, `height`, `viewBox`) that browsers and image tools open directly.
 *
 * {@linkcode buildTimeline} computes the layout (where every row and box is); the browser test
 * reads it to know which colour must be at which pixel. {@linkcode timelineSvg} draws it.
 *
 * @module
 */
import { SLOTS_PROCESS } from "./perfetto.ts";

/** Options of {@linkcode timelineSvg}. */
export interface TimelineOptions {
  /** Picture width in px (default 1200). */
  width?: number;
  /** First time shown, ms from the trace's start (default 0). */
  fromMs?: number;
  /** Last time shown, ms (default: the trace's end). */
  toMs?: number;
  /** Draw one row per vCPU under the slots (default true). */
  vcpuRows?: boolean;
  /** Title (default: from the trace's policy and slots). */
  title?: string;
  /** Height of a slot row, px (default 28). */
  slotRowHeight?: number;
  /** Height of a vCPU row, px (default 14). */
  vcpuRowHeight?: number;
}

/** The palette VMs take in order (Tableau 10: distinct, colour-blind aware). */
export const PALETTE = [
  "#4e79a7",
  "#f28e2b",
  "#e15759",
  "#76b7b2",
  "#59a14f",
  "#edc948",
  "#b07aa1",
  "#ff9da7",
  "#9c755f",
  "#bab0ac",
] as const;

/** Background of a slot row (an idle slot). */
export const IDLE_COLOR = "#eeeeee";
/** Picture background. */
export const BACKGROUND = "#ffffff";

/** One box on a row, in px. */
export interface TimelineBox {
  /** Left edge. */
  x: number;
  /** Width. */
  w: number;
  /** VM index (into {@linkcode TimelineModel.vms}). */
  vm: number;
  /** `running` (solid) or `runnable` (pale); slot boxes are `running`. */
  kind: "running" | "runnable";
  /** Tooltip. */
  title: string;
}

/** One row. */
export interface TimelineRow {
  /** Label at the left. */
  label: string;
  /** Top, px. */
  y: number;
  /** Height, px. */
  h: number;
  /** `slot` or `vcpu`. */
  kind: "slot" | "vcpu";
  /** Boxes, left to right, merged where under half a pixel apart. */
  boxes: TimelineBox[];
  /** Halted stretches (vCPU rows), px `[x, w]`. */
  halted: [number, number][];
  /** Wake ticks (vCPU rows), px. */
  wakes: number[];
}

/** The layout of a timeline. */
export interface TimelineModel {
  /** Picture width, px. */
  width: number;
  /** Picture height, px. */
  height: number;
  /** Title. */
  title: string;
  /** VM names; VM i is drawn in {@linkcode vmColor}(i). */
  vms: string[];
  /** Rows, top to bottom. */
  rows: TimelineRow[];
  /** Plot area, px. */
  plot: { x: number; y: number; w: number; h: number };
  /** Time window shown, ms from the trace's start. */
  fromMs: number;
  /** See `fromMs`. */
  toMs: number;
  /** Axis ticks, ms. */
  ticks: number[];
  /** Legend entries: swatch position, px. */
  legend: { x: number; y: number; size: number; vm: number }[];
}

/** Colour of VM `i`. */
export function vmColor(i: number): string {
  return PALETTE[((i % PALETTE.length) + PALETTE.length) % PALETTE.length];
}

/** x (px) of time `ms` in `model`. */
export function xOf(model: TimelineModel, ms: number): number {
  const { plot, fromMs, toMs } = model;
  return plot.x + ((ms - fromMs) / (toMs - fromMs)) * plot.w;
}

interface RawEvent {
  name: string;
  ph: string;
  ts: number;
  dur: number;
  pid: number;
  tid: number;
  args: Record<string, unknown>;
}

function readEvents(json: unknown): { events: RawEvent[]; other: Record<string, unknown> } {
  const o = json as { traceEvents?: unknown; otherData?: unknown } | null;
  if (typeof o !== "object" || o === null || !Array.isArray(o.traceEvents)) {
    throw new Error("not a Perfetto / Chrome trace: expected an object with a traceEvents array");
  }
  const events: RawEvent[] = [];
  for (const e of o.traceEvents as unknown[]) {
    if (typeof e !== "object" || e === null) continue;
    const x = e as Record<string, unknown>;
    events.push({
      name: String(x.name ?? ""),
      ph: String(x.ph ?? ""),
      ts: Number(x.ts ?? 0),
      dur: Number(x.dur ?? 0),
      pid: Number(x.pid ?? 0),
      tid: Number(x.tid ?? 0),
      args: (typeof x.args === "object" && x.args !== null ? x.args : {}) as Record<
        string,
        unknown
      >,
    });
  }
  const other =
    (typeof o.otherData === "object" && o.otherData !== null ? o.otherData : {}) as Record<
      string,
      unknown
    >;
  return { events, other };
}

/** A "nice" step (1, 2 or 5 × 10^k) giving about `n` ticks over `span`. */
function niceStep(span: number, n: number): number {
  const raw = span / Math.max(1, n);
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

/** Lays a timeline out (see {@linkcode TimelineModel}); throws for JSON that is not a trace. */
export function buildTimeline(perfettoJson: unknown, options: TimelineOptions = {}): TimelineModel {
  const { events, other } = readEvents(perfettoJson);
  const width = options.width ?? 1200;
  const slotH = options.slotRowHeight ?? 28;
  const vcpuH = options.vcpuRowHeight ?? 14;
  const withVcpus = options.vcpuRows ?? true;

  // Processes and threads from the metadata.
  const procNames = new Map<number, string>();
  const threadNames = new Map<string, string>();
  const key = (pid: number, tid: number) => `${pid}:${tid}`;
  for (const e of events) {
    if (e.ph !== "M") continue;
    const name = String(e.args.name ?? "");
    if (e.name === "process_name") procNames.set(e.pid, name);
    if (e.name === "thread_name") threadNames.set(key(e.pid, e.tid), name);
  }
  const slotPid = [...procNames].find(([, n]) => n === SLOTS_PROCESS)?.[0];
  if (slotPid === undefined) {
    throw new Error(`not a deno-vmm trace: no process named "${SLOTS_PROCESS}" in the metadata`);
  }
  const vmPids = [...procNames].filter(([, n]) => n.startsWith("vm ")).sort((a, b) => a[0] - b[0]);
  const vms: string[] = vmPids.map(([, n]) => n.slice(3));
  const vmIndex = (name: string): number => {
    let i = vms.indexOf(name);
    if (i < 0) i = vms.push(name) - 1;
    return i;
  };
  const slotOfTid = new Map<number, number>();
  for (const [k, n] of threadNames) {
    const [pid, tid] = k.split(":").map(Number);
    const m = /^slot (\d+)$/.exec(n);
    if (pid === slotPid && m) slotOfTid.set(tid, Number(m[1]));
  }
  const complete = events.filter((e) => e.ph === "X");
  let endUs = 0;
  for (const e of events) if (e.ph !== "M") endUs = Math.max(endUs, e.ts + e.dur);
  const fromMs = Math.max(0, options.fromMs ?? 0);
  let toMs = options.toMs ?? endUs / 1e3;
  if (!(toMs > fromMs)) toMs = fromMs + 1;

  const slots = Math.max(Number(other.slots ?? 0) || 0, slotOfTid.size);
  const title = options.title ??
    `deno-vmm schedule: policy ${other.policy ?? "?"}, ${slots} slot${slots === 1 ? "" : "s"}, ${
      fromMs.toFixed(1)
    }–${toMs.toFixed(1)} ms`;

  // Layout: title, legend, rows, axis.
  const labelW = 110;
  const plot = { x: labelW, y: 64, w: Math.max(50, width - labelW - 24), h: 0 };
  const scale = plot.w / (toMs - fromMs);
  const px = (us: number) => plot.x + (us / 1e3 - fromMs) * scale;
  const clip = (x0: number, x1: number): [number, number] | null => {
    const a = Math.max(plot.x, x0), b = Math.min(plot.x + plot.w, x1);
    return b > a ? [a, b] : null;
  };
  const rows: TimelineRow[] = [];
  let y = plot.y;
  for (let s = 0; s < slots; s++) {
    rows.push({
      label: `slot ${s}`,
      y,
      h: slotH,
      kind: "slot",
      boxes: [],
      halted: [],
      wakes: [],
    });
    y += slotH + 4;
  }
  for (const e of complete) {
    if (e.pid !== slotPid) continue;
    const s = slotOfTid.get(e.tid);
    if (s === undefined || !rows[s]) continue;
    const c = clip(px(e.ts), px(e.ts + e.dur));
    if (!c) continue;
    const vm = typeof e.args.vm === "string" ? e.args.vm : e.name.split("/")[0];
    rows[s].boxes.push({
      x: c[0],
      w: c[1] - c[0],
      vm: vmIndex(vm),
      kind: "running",
      title: `${e.name} ${(e.ts / 1e3).toFixed(3)} ms +${(e.dur / 1e3).toFixed(3)} ms (${
        e.args.reason ?? ""
      })`,
    });
  }

  if (withVcpus) {
    y += 8;
    const vcpuRows = new Map<string, TimelineRow>();
    const threads = [...threadNames].map(([k, n]) => {
      const [pid, tid] = k.split(":").map(Number);
      return { pid, tid, n };
    }).filter((t) => t.pid !== slotPid && procNames.get(t.pid)?.startsWith("vm "))
      .sort((a, b) => a.pid - b.pid || a.tid - b.tid);
    for (const t of threads) {
      const vm = procNames.get(t.pid)!.slice(3);
      const idx = /^vcpu (\d+)$/.exec(t.n)?.[1] ?? t.n;
      const row: TimelineRow = {
        label: `${vm}/${idx}`,
        y,
        h: vcpuH,
        kind: "vcpu",
        boxes: [],
        halted: [],
        wakes: [],
      };
      vcpuRows.set(key(t.pid, t.tid), row);
      rows.push(row);
      y += vcpuH + 3;
    }
    for (const e of events) {
      const row = vcpuRows.get(key(e.pid, e.tid));
      if (!row) continue;
      const vm = vmIndex(procNames.get(e.pid)!.slice(3));
      if (e.ph === "X") {
        const c = clip(px(e.ts), px(e.ts + e.dur));
        if (!c) continue;
        if (e.name === "halted") row.halted.push([c[0], c[1] - c[0]]);
        else if (e.name === "running" || e.name === "runnable") {
          row.boxes.push({
            x: c[0],
            w: c[1] - c[0],
            vm,
            kind: e.name,
            title: `${row.label} ${e.name} ${(e.ts / 1e3).toFixed(3)} ms +${
              (e.dur / 1e3).toFixed(3)
            } ms`,
          });
        }
      } else if ((e.ph === "i" || e.ph === "I") && e.name === "wake" && !e.args.ignored) {
        const x = px(e.ts);
        if (x >= plot.x && x <= plot.x + plot.w) row.wakes.push(x);
      }
    }
  }
  plot.h = y - plot.y;

  // Merge boxes closer than half a pixel (keeps large traces small).
  for (const row of rows) {
    row.boxes.sort((a, b) => a.x - b.x);
    const merged: TimelineBox[] = [];
    for (const b of row.boxes) {
      const last = merged[merged.length - 1];
      if (last && last.vm === b.vm && last.kind === b.kind && b.x - (last.x + last.w) < 0.5) {
        last.w = Math.max(last.w, b.x + b.w - last.x);
        last.title = `${b.title.split(" ")[0]} (merged)`;
      } else merged.push({ ...b });
    }
    row.boxes = merged;
    row.halted.sort((a, b) => a[0] - b[0]);
    const h: [number, number][] = [];
    for (const [x, w] of row.halted) {
      const last = h[h.length - 1];
      if (last && x - (last[0] + last[1]) < 0.5) last[1] = Math.max(last[1], x + w - last[0]);
      else h.push([x, w]);
    }
    row.halted = h;
  }

  const step = niceStep(toMs - fromMs, Math.max(2, Math.floor(plot.w / 90)));
  const ticks: number[] = [];
  for (let t = Math.ceil(fromMs / step) * step; t <= toMs + 1e-9; t += step) {
    ticks.push(Number(t.toPrecision(12)));
  }
  const legend: TimelineModel["legend"] = [];
  let lx = plot.x;
  vms.forEach((name, i) => {
    legend.push({ x: lx, y: 36, size: 12, vm: i });
    lx += 12 + 6 + Math.max(30, name.length * 7.5) + 14;
  });
  const height = y + 40;
  return { width, height, title, vms, rows, plot, fromMs, toMs, ticks, legend };
}

/** Escapes text for XML. */
function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const f = (x: number) => Number(x.toFixed(2));

/** Draws a laid-out timeline as SVG. */
export function renderTimeline(m: TimelineModel): string {
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="${m.width}" height="${m.height}" ` +
      `viewBox="0 0 ${m.width} ${m.height}" font-family="DejaVu Sans, Liberation Sans, Arial, sans-serif" font-size="12">`,
  );
  out.push(`<title>${esc(m.title)}</title>`);
  out.push(`<rect x="0" y="0" width="${m.width}" height="${m.height}" fill="${BACKGROUND}"/>`);
  out.push(`<text x="${m.plot.x}" y="22" font-size="15" font-weight="bold">${esc(m.title)}</text>`);
  out.push(`<g id="legend">`);
  for (const l of m.legend) {
    out.push(
      `<rect x="${f(l.x)}" y="${l.y}" width="${l.size}" height="${l.size}" fill="${
        vmColor(l.vm)
      }"/><text x="${f(l.x + l.size + 6)}" y="${l.y + l.size - 1}">${esc(m.vms[l.vm])}</text>`,
    );
  }
  out.push(`</g>`);
  // Grid lines under the rows.
  out.push(`<g id="grid" stroke="#dddddd" stroke-width="1">`);
  for (const t of m.ticks) {
    const x = f(xOf(m, t));
    out.push(`<line x1="${x}" y1="${m.plot.y - 4}" x2="${x}" y2="${m.plot.y + m.plot.h}"/>`);
  }
  out.push(`</g>`);
  out.push(`<g id="rows">`);
  for (const row of m.rows) {
    out.push(
      `<text x="${m.plot.x - 8}" y="${f(row.y + row.h / 2 + 4)}" text-anchor="end"${
        row.kind === "vcpu" ? ' font-size="11" fill="#444444"' : ""
      }>${esc(row.label)}</text>`,
    );
    if (row.kind === "slot") {
      out.push(
        `<rect x="${m.plot.x}" y="${row.y}" width="${
          f(m.plot.w)
        }" height="${row.h}" fill="${IDLE_COLOR}"/>`,
      );
    }
    for (const [x, w] of row.halted) {
      out.push(
        `<rect x="${f(x)}" y="${f(row.y + row.h / 2 - 0.5)}" width="${
          f(Math.max(w, 0.5))
        }" height="1" fill="#bbbbbb"/>`,
      );
    }
    for (const b of row.boxes) {
      const pale = b.kind === "runnable" ? ` fill-opacity="0.3"` : "";
      out.push(
        `<rect x="${f(b.x)}" y="${row.y}" width="${
          f(Math.max(b.w, 0.5))
        }" height="${row.h}" fill="${vmColor(b.vm)}"${pale}><title>${esc(b.title)}</title></rect>`,
      );
    }
    if (row.wakes.length) {
      const d = row.wakes.map((x) => `M${f(x)} ${f(row.y - 1)}v4`).join("");
      out.push(`<path d="${d}" stroke="#222222" stroke-width="1" fill="none"/>`);
    }
  }
  out.push(`</g>`);
  // Axis.
  const ay = m.plot.y + m.plot.h + 6;
  out.push(`<g id="axis" font-size="11">`);
  out.push(
    `<line x1="${m.plot.x}" y1="${ay}" x2="${
      f(m.plot.x + m.plot.w)
    }" y2="${ay}" stroke="#333333"/>`,
  );
  for (const t of m.ticks) {
    const x = f(xOf(m, t));
    out.push(
      `<line x1="${x}" y1="${ay}" x2="${x}" y2="${ay + 5}" stroke="#333333"/>` +
        `<text x="${x}" y="${ay + 17}" text-anchor="middle">${esc(`${t} ms`)}</text>`,
    );
  }
  out.push(`</g>`);
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

/**
 * The timeline of a Perfetto JSON trace written by {@linkcode toPerfetto}, as a standalone SVG
 * document. Throws an Error naming what is missing when the JSON is not such a trace.
 */
export function timelineSvg(perfettoJson: object, options: TimelineOptions = {}): string {
  return renderTimeline(buildTimeline(perfettoJson, options));
}
