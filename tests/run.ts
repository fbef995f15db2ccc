/**
 * The test runner of `deno task test`: every `tests/*_test.ts` file (or the files named on the
 * command line) runs in its own `deno test -A --unstable-worker-options FILE` process, one
 * after the other, its output streamed as it comes.
 *
 * A process per file, because a test that passes its deadline ends its process
 * (`tests/helpers/deadline.ts`: a spinning Worker or real-time thread cannot be stopped any
 * other way), and that must cost one file, not the suite. Each file also has a ceiling
 * ({@linkcode FILE_CEILING_MS}): past it, the threads of its process are dumped and its process
 * group is killed. At the end a table gives each file's result, time and slowest test, then the
 * failed tests one a line (`FAILED TEST: <file>: <name>`), then the closing line
 * `N passed, N failed` (tests summed over the files; a file that died or was killed counts one
 * failure more than the failures it reported). The exit status is 1 on any failure.
 *
 * ```sh
 * deno task test                                   # every tests/*_test.ts
 * deno task test tests/api_test.ts tests/vm_boot_test.ts
 * deno task test --filter "on KVM"                 # passed to deno test
 * deno task test --ceiling=300 --fail-fast         # seconds per file; other flags go to deno test
 * ```
 *
 * @module
 */
import {
  busiestProfile,
  DEADLINE_EXIT_CODE,
  DEADLINE_MARK,
  threadDump,
} from "./helpers/deadline.ts";

/** The repository root: `deno test` runs there, so that deno.json applies. */
const ROOT = new URL("..", import.meta.url).pathname;
/** This directory: the default test files are its `*_test.ts`. */
const TESTS_DIR = new URL(".", import.meta.url).pathname;

/**
 * How long one file may run. The slowest file took 60 s on a loaded machine (the whole suite
 * 4.8 min): ten times that still lets three stuck files end inside CI's 40-minute bound on the
 * suite. A test's own deadline (`tests/helpers/deadline.ts`) normally ends a stuck file first;
 * the ceiling catches what no test owns (top-level code, a process that does not exit).
 */
export const FILE_CEILING_MS = 10 * 60_000;

/** What the command line asked for. */
export interface RunOptions {
  /** Test files to run, as given (default: every `tests/*_test.ts`). */
  files: string[];
  /** Extra arguments for every `deno test` (`--filter X`, `--fail-fast`, ...). */
  denoArgs: string[];
  /** Ceiling of one file, ms. */
  ceilingMs: number;
}

/** Parses the runner's arguments: files, `--ceiling=SECONDS`, and flags passed to deno test. */
export function parseRunArgs(args: string[]): RunOptions {
  const opts: RunOptions = { files: [], denoArgs: [], ceilingMs: FILE_CEILING_MS };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--ceiling" || a.startsWith("--ceiling=")) {
      const v = a.includes("=") ? a.slice(a.indexOf("=") + 1) : args[++i];
      const s = Number(v);
      if (!(s > 0)) throw new Error(`--ceiling takes a number of seconds, not '${v}'`);
      opts.ceilingMs = s * 1000;
    } else if (a === "--filter") {
      if (args[i + 1] === undefined) throw new Error("--filter takes a pattern");
      opts.denoArgs.push(a, args[++i]);
    } else if (a.startsWith("-")) {
      opts.denoArgs.push(a);
    } else {
      opts.files.push(a);
    }
  }
  return opts;
}

/** What one file's `deno test` output says. */
export interface FileReport {
  /** Tests passed (from the summary line, or counted when there is none). */
  passed: number;
  /** Tests failed (idem). */
  failed: number;
  /** Whether deno test's closing summary line (`ok | X passed | Y failed`) was seen. */
  summary: boolean;
  /** Names of the failed tests (and of a test that passed its deadline or was left pending). */
  failures: string[];
  /** The slowest test that finished, and its time as deno test printed it (whole seconds). */
  slowest: { name: string; ms: number } | null;
}

// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

/** Milliseconds of a deno test duration: `766µs`, `80ms`, `2s`, `1m5s`. */
function durationMs(d: string): number {
  const m = d.match(/^(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?(?:\d+µs)?$/);
  return m ? Number(m[1] ?? 0) * 60_000 + Number(m[2] ?? 0) * 1000 + Number(m[3] ?? 0) : 0;
}

/** Reads the output of one `deno test FILE` run (colours or not). */
export function parseTestOutput(output: string): FileReport {
  const text = output.replace(ANSI, "");
  const lines = text.split("\n").map((l) => l.trimEnd());
  let okLines = 0;
  const failedLines: string[] = [];
  let slowest: FileReport["slowest"] = null;
  for (const line of lines) {
    // A test's result: "name ... ok (80ms)"; steps are indented and counted in their test.
    const m = line.match(/^(\S.*) \.\.\. (ok|FAILED|ignored|cancelled) \(([\dmsµ]+)\)$/);
    if (!m) continue;
    if (m[2] === "ok") okLines++;
    if (m[2] === "FAILED") failedLines.push(m[1]);
    const ms = durationMs(m[3]);
    if (m[2] !== "ignored" && (slowest === null || ms > slowest.ms)) slowest = { name: m[1], ms };
  }
  const failures = new Set<string>();
  // The FAILURES section: "name => ./file.ts:1:2" or "./file.ts (uncaught error)".
  const at = lines.findIndex((l) => /^\s*FAILURES\s*$/.test(l));
  if (at >= 0) {
    for (const l of lines.slice(at + 1)) {
      if (l === "" && failures.size > 0) break;
      if (l !== "") failures.add(l.replace(/ => \S+:\d+:\d+$/, ""));
    }
  }
  for (const name of failedLines) failures.add(name);
  for (const l of lines) {
    if (l.startsWith(DEADLINE_MARK)) failures.add(l.slice(DEADLINE_MARK.length + 1));
  }
  // deno test's list when the process exits during a test.
  const pending = lines.findIndex((l) => l === "The following tests were pending:");
  if (pending >= 0) {
    for (const l of lines.slice(pending + 2)) {
      if (l === "") break;
      failures.add(l.replace(/ => \S+:\d+:\d+$/, ""));
    }
  }
  const summary = [...lines].reverse().map((l) =>
    l.match(/^(?:ok|FAILED) \| (\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/)
  ).find((m) => m);
  if (summary) {
    return {
      passed: Number(summary[1]),
      failed: Number(summary[2]),
      summary: true,
      failures: [...failures],
      slowest,
    };
  }
  return {
    passed: okLines,
    failed: failedLines.length,
    summary: false,
    failures: [...failures],
    slowest,
  };
}

/** The result of one file. */
export interface FileResult extends FileReport {
  /** The file, relative to the repository root. */
  file: string;
  /** "ok", "failed", "died" (ended without its summary) or "ceiling" (killed). */
  status: "ok" | "failed" | "died" | "ceiling";
  /** How the process ended, when not plainly. */
  detail: string;
  /** Wall time, ms. */
  ms: number;
}

/** The test files: the ones given (relative to the working directory), or tests/*_test.ts. */
export function testFiles(given: string[]): string[] {
  if (given.length > 0) {
    return given.map((f) => {
      const abs = f.startsWith("/") ? f : `${Deno.cwd()}/${f}`;
      if (!Deno.statSync(abs).isFile) throw new Error(`${f} is not a file`);
      return abs;
    });
  }
  return [...Deno.readDirSync(TESTS_DIR)]
    .filter((e) => e.isFile && e.name.endsWith("_test.ts"))
    .map((e) => TESTS_DIR + e.name)
    .sort();
}

/** `path` relative to the repository root when it is inside it. */
function rel(path: string): string {
  return path.startsWith(ROOT) ? path.slice(ROOT.length) : path;
}

/** The process group of the test process now running (killed on SIGINT/SIGTERM/SIGHUP). */
let runningGroup: number | null = null;

function killGroup(pgid: number) {
  try {
    Deno.kill(-pgid, "SIGKILL");
  } catch {
    // The group has no process left.
  }
}

/** Other processes of the group `pgid`: "pid comm state" lines. */
function groupProcesses(pgid: number): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name) || Number(e.name) === pgid) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(f[5 - 3]) !== pgid) continue;
      out.push(`  ${e.name} ${stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"))} ${f[0]}`);
    } catch {
      // ended meanwhile
    }
  }
  return out;
}

async function writeAll(w: { write(p: Uint8Array): Promise<number> }, bytes: Uint8Array) {
  for (let off = 0; off < bytes.length;) off += await w.write(bytes.subarray(off));
}

/** Runs one file in its own process group, streaming its output; its result. */
export async function runFile(file: string, opts: RunOptions): Promise<FileResult> {
  const started = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["test", "-A", "--unstable-worker-options", ...opts.denoArgs, file],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    detached: true, // its own process group, so that the ceiling kills whatever it started
  }).spawn();
  runningGroup = child.pid;
  let output = "";
  const decoder = new TextDecoder();
  const pump = async (from: ReadableStream<Uint8Array>, to: typeof Deno.stdout, keep: boolean) => {
    for await (const chunk of from) {
      if (keep) output += decoder.decode(chunk, { stream: true });
      await writeAll(to, chunk);
    }
  };
  const pumps = Promise.all([
    pump(child.stdout, Deno.stdout, true),
    pump(child.stderr, Deno.stderr, false),
  ]);
  let hitCeiling = false;
  const ceiling = setTimeout(() => {
    hitCeiling = true;
    const others = groupProcesses(child.pid);
    console.error(
      `\nCEILING: ${rel(file)} still running after ${opts.ceilingMs / 1000} s; ` +
        `killing its process group\n${threadDump(child.pid)}${busiestProfile(child.pid)}` +
        (others.length ? `other processes of its group:\n${others.join("\n")}\n` : ""),
    );
    killGroup(child.pid);
  }, opts.ceilingMs);
  const status = await child.status;
  clearTimeout(ceiling);
  killGroup(child.pid); // whatever the tests left behind
  runningGroup = null;
  await pumps;
  const report = parseTestOutput(output);
  const ms = performance.now() - started;
  const how = status.signal ? `killed by ${status.signal}` : `exit ${status.code}`;
  if (hitCeiling) {
    return {
      ...report,
      file: rel(file),
      status: "ceiling",
      detail: how,
      ms,
      failed: report.failed + 1,
    };
  }
  if (!report.summary) {
    const detail = status.code === DEADLINE_EXIT_CODE ? `${how}: a test passed its deadline` : how;
    return { ...report, file: rel(file), status: "died", detail, ms, failed: report.failed + 1 };
  }
  if (!status.success && report.failed === 0) {
    return {
      ...report,
      file: rel(file),
      status: "failed",
      detail: `${how} after an ok summary`,
      ms,
      failed: 1,
    };
  }
  return { ...report, file: rel(file), status: report.failed ? "failed" : "ok", detail: "", ms };
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** The closing report: a table of the files, the failed tests, and `N passed, N failed`. */
export function formatResults(results: FileResult[]): string {
  const rows = [
    ["file", "result", "passed", "failed", "time", "slowest test"],
    ...results.map((r) => [
      r.file,
      r.status + (r.detail ? ` (${r.detail})` : ""),
      String(r.passed),
      String(r.failed),
      seconds(r.ms),
      r.slowest
        ? `${r.slowest.ms < 1000 ? `${r.slowest.ms} ms` : seconds(r.slowest.ms)} ${r.slowest.name}`
        : "",
    ]),
  ];
  const width = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const right = new Set([2, 3, 4]);
  const table = rows.map((r) =>
    r.map((v, c) =>
      right.has(c) ? v.padStart(width[c]) : c === r.length - 1 ? v : v.padEnd(width[c])
    )
      .join("  ").trimEnd()
  );
  const failed = results.flatMap((r) =>
    r.failures.length
      ? r.failures.map((n) => `FAILED TEST: ${r.file}: ${n}`)
      : r.status === "ok"
      ? []
      : [`FAILED TEST: ${r.file}: (${r.status}: ${r.detail})`]
  );
  const passed = results.reduce((s, r) => s + r.passed, 0);
  const failures = results.reduce((s, r) => s + r.failed, 0);
  const total = results.reduce((s, r) => s + r.ms, 0);
  return [
    "",
    ...table,
    `${results.length} files in ${seconds(total)}`,
    ...(failed.length ? ["", ...failed] : []),
    "",
    `${passed} passed, ${failures} failed`,
  ].join("\n") + "\n";
}

async function main(args: string[]): Promise<number> {
  let opts: RunOptions;
  let files: string[];
  try {
    opts = parseRunArgs(args);
    files = testFiles(opts.files);
  } catch (e) {
    console.error(`tests/run.ts: ${(e as Error).message}`);
    return 2;
  }
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    Deno.addSignalListener(sig, () => {
      if (runningGroup !== null) killGroup(runningGroup);
      console.error(`\ntests/run.ts: ${sig}: stopped`);
      Deno.exit(sig === "SIGINT" ? 130 : sig === "SIGTERM" ? 143 : 129);
    });
  }
  const results: FileResult[] = [];
  for (const [i, file] of files.entries()) {
    console.log(`\n=== ${rel(file)} (${i + 1}/${files.length})`);
    const r = await runFile(file, opts);
    if (r.status !== "ok") {
      console.log(`=== ${r.file}: ${r.status}${r.detail ? ` (${r.detail})` : ""}`);
    }
    results.push(r);
  }
  await writeAll(Deno.stdout, new TextEncoder().encode(formatResults(results)));
  return results.every((r) => r.status === "ok" && r.failed === 0) ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
