/**
 * The compare report as one self-contained HTML file: inline SVG charts and inline CSS, no
 * script, nothing fetched (its Content-Security-Policy forbids every load, so a browser says so
 * if anything tries). A header, then one section per scenario stacked from the top of the page
 * (their positions are known: {@linkcode CompareLayout}), then the summary table and verdicts.
 *
 * @module
 */
import { pluginColor } from "./charts.ts";
import { CELL_NOTE, runsSentence, summaryTable } from "./markdown.ts";
import type { CompareData } from "./run.ts";
import { scenarioSection, type Section, SECTION_WIDTH } from "./section.ts";
import { BACKGROUND, esc, rect, text } from "./svg.ts";
import { type ScenarioVerdict, verdicts } from "./verdict.ts";

/** Height of the header, px. */
export const HEADER_HEIGHT = 64;

/** Where everything is on the page, px from its top-left corner (at zoom 1). */
export interface CompareLayout {
  /** Page width of the charts. */
  width: number;
  /** Where the sections end and the tables begin. */
  chartsHeight: number;
  /** The header's plugin legend: each plugin's swatch. */
  legend: { plugin: string; x: number; y: number; size: number; color: string }[];
  /** Each scenario's section and its top. */
  sections: { top: number; section: Section }[];
}

/** The report and its layout. */
export interface CompareHtml {
  /** The HTML document. */
  html: string;
  /** Where its charts are. */
  layout: CompareLayout;
}

function header(
  data: CompareData,
  count: number,
): { svg: string; legend: CompareLayout["legend"] } {
  const W = SECTION_WIDTH;
  const parts = [
    rect(0, 0, W, HEADER_HEIGHT, BACKGROUND),
    text(12, 26, "deno-vmm: plugin comparison", { size: 22, bold: true }),
    text(12, 48, runsSentence(data, count), { size: 12 }),
  ];
  const legend: CompareLayout["legend"] = [];
  data.plugins.forEach((p, i) => {
    const x = 560 + (i % 6) * 88, y = 14 + Math.floor(i / 6) * 16;
    legend.push({ plugin: p.name, x, y, size: 10, color: pluginColor(i) });
    parts.push(rect(x, y, 10, 10, pluginColor(i)), text(x + 14, y + 9, p.name, { size: 11 }));
  });
  return {
    svg:
      `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${HEADER_HEIGHT}" viewBox="0 0 ${W} ${HEADER_HEIGHT}" font-family="sans-serif">${
        parts.join("")
      }</svg>`,
    legend,
  };
}

function cellClass(c: string): string {
  return c.startsWith("yes")
    ? "yes"
    : c.startsWith("no")
    ? "no"
    : /^\d+ of \d+/.test(c)
    ? "some"
    : "";
}

const STYLE = `body{margin:0;background:#fff;color:#222;font-family:sans-serif}
svg{display:block}
.after{padding:8px 12px 24px;max-width:${SECTION_WIDTH - 24}px;font-size:13px}
table{border-collapse:collapse;font-size:12px}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
td.yes{background:#e2f3e2}td.no{background:#f9e0e0}td.some{background:#fdf3d4}`;

/** The report of a comparison, and where its charts are. */
export function compareHtml(
  data: CompareData,
  judged: ScenarioVerdict[] = verdicts(data),
): CompareHtml {
  const head = header(data, data.scenarios.length);
  const sections: CompareLayout["sections"] = [];
  let top = HEADER_HEIGHT;
  for (const s of data.scenarios) {
    const v = judged.find((x) => x.scenario === s.name)!;
    const section = scenarioSection(data, s, v);
    sections.push({ top, section });
    top += section.height;
  }
  const table = summaryTable(data, judged);
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>deno-vmm: plugin comparison</title>
<style>${STYLE}</style>
</head>
<body>
${head.svg}
${sections.map((s) => s.section.svg).join("\n")}
<div class="after">
<h2>Summary</h2>
<p>${esc(CELL_NOTE)}</p>
<table>
<tr>${table.head.map((h) => `<th>${esc(h)}</th>`).join("")}</tr>
${
    table.rows.map((r) =>
      `<tr>${
        r.map((c, i) =>
          `<td${i >= 2 && cellClass(c) ? ` class="${cellClass(c)}"` : ""}>${esc(c)}</td>`
        ).join("")
      }</tr>`
    ).join("\n")
  }
</table>
<h2>Verdicts</h2>
<ul>
${judged.map((v) => `<li>${esc(v.line)}</li>`).join("\n")}
</ul>
<p>Shares are of the slots' time; a VM's target is its weight's part of what the CPU-bound VMs got together, or its cap. Wake latency is from a vCPU's wake to its next grant. ${
    data.mode === "sim"
      ? "Runs are the simulator's (deterministic for a seed; each grant costs the hand-off measured on KVM)."
      : "Runs are on KVM: shares from the EMT threads' CPU time, wake latency from the scheduler's trace."
  }</p>
</div>
</body>
</html>
`;
  return {
    html,
    layout: { width: SECTION_WIDTH, chartsHeight: top, legend: head.legend, sections },
  };
}
