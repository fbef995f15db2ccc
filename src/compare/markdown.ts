/**
 * The Markdown summary of a comparison: one row per scenario, one column per plugin, each cell
 * whether the plugin met the scenario's goal and the headline value (median of the runs, range
 * when they differ), then a verdict line per scenario.
 *
 * @module
 */
import type { CompareData } from "./run.ts";
import { digitsOf, formatValue, type ScenarioVerdict, verdicts } from "./verdict.ts";

function median(xs: number[]): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** A cell: `yes`/`no`/`k of n`, then the headline's median (min-max). */
function cell(v: ScenarioVerdict, plugin: string, runs: number): string {
  const p = v.plugins.find((x) => x.plugin === plugin);
  if (!p) return "-";
  const mark = p.met ? "yes" : p.runsMet > 0 ? `${p.runsMet} of ${runs}` : "no";
  if (!v.headline) return mark;
  const xs = p.headline.filter(Number.isFinite);
  const unit = v.headline.unit;
  let text = formatValue(median(xs), unit);
  const d = digitsOf(unit);
  const lo = Math.min(...xs).toFixed(d), hi = Math.max(...xs).toFixed(d);
  if (lo !== hi) text += ` (${lo}-${hi})`;
  return `${mark}: ${text}`;
}

/** The summary table: its head, and a row per scenario (scenario, goal, a cell per plugin). */
export function summaryTable(
  data: CompareData,
  judged: ScenarioVerdict[],
): { head: string[]; rows: string[][] } {
  const names = data.plugins.map((p) => p.name);
  const head = ["scenario", "goal", ...names];
  const rows = judged.map((v) => [
    v.scenario,
    v.headline
      ? `${v.headline.what} ${v.headline.atMost ? "<=" : ">="} ${
        formatValue(v.headline.limit, v.headline.unit)
      }`
      : "no ejection",
    ...names.map((n) => cell(v, n, data.seeds)),
  ]);
  return { head, rows };
}

/** `3 seeds` (simulator) or `1 run` (KVM). */
export function runsOf(data: CompareData): string {
  const word = data.mode === "sim" ? "seed" : "run";
  return `${data.seeds} ${word}${data.seeds === 1 ? "" : "s"}`;
}

/** One sentence on what the runs were. */
export function runsSentence(data: CompareData, scenarios: number): string {
  const mine = data.plugins.filter((p) => !p.builtin).map((p) => p.name).join(", ");
  const what = `${runsOf(data)} ${data.mode === "sim" ? "in the simulator" : "on KVM"}`;
  return `${data.plugins.length} policies (${mine} beside the built-ins), ${scenarios} scenarios, ${what}, ${data.date}.`;
}

/** What a summary cell says. */
export const CELL_NOTE =
  "Each cell: met the goal in every run (yes), in some, or in none (no); then the goal's headline value, the median of the runs (min-max when they differ).";

/** The summary table and the verdict lines, as Markdown. */
export function compareMarkdown(
  data: CompareData,
  judged: ScenarioVerdict[] = verdicts(data),
): string {
  const { head, rows } = summaryTable(data, judged);
  const esc = (s: string) => s.replaceAll("|", "\\|");
  const line = (cols: string[]) => `| ${cols.map(esc).join(" | ")} |`;
  return [
    `# Plugin comparison`,
    "",
    runsSentence(data, judged.length),
    CELL_NOTE,
    "",
    line(head),
    line(head.map(() => "---")),
    ...rows.map(line),
    "",
    "## Verdicts",
    "",
    ...judged.map((v) => `- ${v.line}`),
    "",
  ].join("\n");
}
