/**
 * The package is ready to publish: `deno publish --dry-run` finds no error, only the warnings
 * deno.json explains, and publishes what users import and nothing of the tests or results.
 * The dry run needs no network (it type-checks locally and uploads nothing).
 */
import { deepStrictEqual, equal, match, ok } from "node:assert/strict";
import { runDeno } from "./helpers/cli.ts";
import { test } from "./helpers/deadline.ts";
import { VERSION } from "../mod.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** Warnings `deno publish` gives by design: imports by computed names (a user's plugin, kernel sources). */
const EXPECTED_WARNINGS = [
  "unanalyzable-dynamic-import src/sched/sandbox_child.ts",
  "unanalyzable-dynamic-import src/sched/sandbox_worker.ts",
  "unanalyzable-dynamic-import src/sim/mod.ts",
  "unanalyzable-dynamic-import src/sim/sim_worker.ts",
  "unanalyzable-dynamic-import src/vm/guest_kernel.ts",
];

/** One diagnostic of `deno publish`: `error[code]` or `warning[code]`, and where. */
interface Diagnostic {
  level: "error" | "warning";
  code: string;
  /** Path relative to the package root, or "" when the diagnostic names no file. */
  file: string;
}

/** The diagnostics and the published files of `deno publish --dry-run` output (no colour). */
function parsePublishOutput(text: string): { diagnostics: Diagnostic[]; files: string[] } {
  const lines = text.split("\n");
  const diagnostics: Diagnostic[] = [];
  const files: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const d = lines[i].match(/^(error|warning)\[([a-z0-9-]+)\]/);
    if (d) {
      const where = lines.slice(i + 1, i + 4).map((l) => l.match(/-->\s+(\S+?)(?::\d+:\d+)?$/))
        .find((m) => m);
      const file = where ? where[1].replace(/^file:\/\//, "").replace(ROOT, "") : "";
      diagnostics.push({ level: d[1] as Diagnostic["level"], code: d[2], file });
    }
    const f = lines[i].match(/^\s+file:\/\/(\S+) \(/);
    if (f) files.push(f[1].replace(ROOT, ""));
  }
  return { diagnostics, files };
}

test("parsePublishOutput finds errors, warnings and files", () => {
  const sample = `Check mod.ts
error[missing-license]: missing license field or file
 --> ${ROOT}deno.json
  = hint: add a "license" field.
warning[unanalyzable-dynamic-import]: unable to analyze dynamic import
  --> ${ROOT}src/a.ts:97:30
   |
error: Found 1 problem
Simulating publish of @x/y@0.1.0 with files:
   file://${ROOT}mod.ts (2.42KB)
   file://${ROOT}src/a.ts (1KB)
`;
  const r = parsePublishOutput(sample);
  deepStrictEqual(r.diagnostics, [
    { level: "error", code: "missing-license", file: "deno.json" },
    { level: "warning", code: "unanalyzable-dynamic-import", file: "src/a.ts" },
  ]);
  deepStrictEqual(r.files, ["mod.ts", "src/a.ts"]);
});

test(
  "deno publish --dry-run: no errors, only the explained warnings, the right files",
  async () => {
    // --allow-dirty: the check must also hold for uncommitted work (CI checks out clean).
    const { code, text } = await runDeno(["publish", "--dry-run", "--allow-dirty"], ROOT);
    const { diagnostics, files } = parsePublishOutput(text);
    const errors = diagnostics.filter((d) => d.level === "error");
    deepStrictEqual(errors, [], text);
    equal(code, 0, text);
    match(text, /Success Dry run complete/);
    const warnings = diagnostics.filter((d) => d.level === "warning")
      .map((d) => `${d.code} ${d.file}`).sort();
    deepStrictEqual(warnings, EXPECTED_WARNINGS, text);

    // What users import is published: every export, the license, the shim's C source.
    const config = JSON.parse(
      (await Deno.readTextFile(`${ROOT}deno.json`)).replace(/^\s*\/\/.*$/gm, ""),
    );
    equal(config.license, "Apache-2.0");
    const exported = Object.values(config.exports as Record<string, string>)
      .map((p) => p.replace(/^\.\//, ""));
    const kernel = ["guests/sources.mk", "guests/kernel.ld", "guests/kernel/entry.S"];
    for (
      const f of [...exported, "LICENSE", "README.md", "CHANGELOG.md", "ffi/shim.c", ...kernel]
    ) {
      ok(files.includes(f), `${f} is not published:\n${files.join("\n")}`);
    }
    // And nothing a package does not need: tests, fixtures, results, build output, local state.
    const unwanted = files.filter((f) =>
      /^(tests|bench\/results|bench\/baseline|guests\/build|docs\/api|\.ci)\//.test(f) ||
      /^\.git$/.test(f) || /^bench\/[^/]+\.ts$/.test(f)
    );
    deepStrictEqual(unwanted, []);
  },
  { deadlineMs: 120_000 },
);

test("one version: deno.json, VERSION and the CHANGELOG's latest release agree", async () => {
  const config = await Deno.readTextFile(`${ROOT}deno.json`);
  equal(config.match(/^ {2}"version": "([^"]+)",$/m)?.[1], VERSION);
  match(VERSION, /^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/);
  const changelog = await Deno.readTextFile(`${ROOT}CHANGELOG.md`);
  const releases = [...changelog.matchAll(/^## (.+)$/gm)].map((m) => m[1].trim());
  equal(releases[0], "Unreleased");
  equal(releases[1], VERSION);
});
