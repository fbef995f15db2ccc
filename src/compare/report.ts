/**
 * A comparison's report in one call: the verdicts, the Markdown summary and the HTML report.
 *
 * @module
 */
import { compareHtml } from "./html.ts";
import { compareMarkdown } from "./markdown.ts";
import type { CompareData } from "./run.ts";
import { type ScenarioVerdict, verdicts } from "./verdict.ts";

/** What {@linkcode compareReport} returns. */
export interface CompareReport {
  /** Per scenario: which plugins met its goal, each run's checks, the verdict line. */
  verdicts: ScenarioVerdict[];
  /** The summary table and verdict lines, as Markdown. */
  markdown: string;
  /** The self-contained HTML report (inline SVG charts, no script, nothing fetched). */
  html: string;
}

/**
 * Judges a comparison and writes its report.
 *
 * ```ts
 * import { compare, compareReport } from "./mod.ts";
 *
 * const data = await compare({ plugins: ["my_policy.ts"], scenarios: ["weights"], seeds: 2 });
 * const report = compareReport(data);
 * await Deno.writeTextFile("compare.html", report.html);
 * console.log(report.markdown);
 * ```
 */
export function compareReport(data: CompareData): CompareReport {
  const judged = verdicts(data);
  return {
    verdicts: judged,
    markdown: compareMarkdown(data, judged),
    html: compareHtml(data, judged).html,
  };
}
