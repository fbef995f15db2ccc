/**
 * The test runner (`tests/run.ts`, `deno task test`): reading deno test's output, and whole runs
 * on fixtures: a file that passes its deadline counts as a failure by name, a file past its
 * ceiling is killed with a thread dump, and the closing line sums the files.
 */
import { deepStrictEqual as assertEquals, match, ok as assert } from "node:assert/strict";
import { test } from "./helpers/deadline.ts";
import { parseRunArgs, parseTestOutput } from "./run.ts";

const RUNNER = new URL("./run.ts", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname;

test("deno test's summary line gives the counts; the FAILURES section the names", () => {
  const out = [
    "\x1b[0m\x1b[38;5;245mrunning 3 tests from ./tests/x_test.ts\x1b[0m",
    "a ... \x1b[0m\x1b[32mok\x1b[0m \x1b[0m\x1b[38;5;245m(2s)\x1b[0m",
    "b ...",
    "------- output -------",
    "b ... ok (1m3s)",
    "c ... FAILED (766µs)",
    "  step ... FAILED (1ms)",
    "d ... ignored (0ms)",
    "",
    " ERRORS ",
    "",
    "c => ./tests/x_test.ts:10:6",
    "error: AssertionError",
    "",
    " FAILURES ",
    "",
    "c => ./tests/x_test.ts:10:6",
    "",
    "FAILED | 2 passed (1 step) | 1 failed | 1 ignored (1m5s)",
  ].join("\n");
  assertEquals(parseTestOutput(out), {
    passed: 2,
    failed: 1,
    summary: true,
    failures: ["c"],
    slowest: { name: "b", ms: 63_000 },
  });
});

test("without a summary line (the process died) the results seen are counted", () => {
  const out = [
    "running 3 tests from ./tests/x_test.ts",
    "a ... ok (20ms)",
    "hang ...",
    "------- output -------",
    "",
    "DEADLINE PASSED: hang",
    "threads of process 1 (1):",
    "----- output end -----",
    "",
    "warning A test called Deno.exit(124) while the exit sanitizer was disabled.",
    "",
    "The following tests were pending:",
    "",
    "hang => ./tests/helpers/deadline.ts:65:8",
    "",
  ].join("\n");
  assertEquals(parseTestOutput(out), {
    passed: 1,
    failed: 0,
    summary: false,
    failures: ["hang"],
    slowest: { name: "a", ms: 20 },
  });
});

test("arguments: files, the ceiling, and flags passed to deno test", () => {
  assertEquals(parseRunArgs(["a_test.ts", "--filter", "on KVM", "--ceiling=30", "--fail-fast"]), {
    files: ["a_test.ts"],
    denoArgs: ["--filter", "on KVM", "--fail-fast"],
    ceilingMs: 30_000,
  });
  assertEquals(parseRunArgs(["--ceiling", "1.5"]).ceilingMs, 1500);
});

/** Runs the runner on `args` (from the repository root); its exit code and output. */
async function runner(args: string[], env: Record<string, string>) {
  const started = performance.now();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", RUNNER, ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  const stdout = dec.decode(out.stdout);
  return {
    code: out.code,
    stdout,
    text: stdout + dec.decode(out.stderr),
    seconds: (performance.now() - started) / 1000,
  };
}

test("a file whose test passes its deadline fails by name; the others run on", async () => {
  const r = await runner(
    ["tests/fixtures/deadline_hang.ts", "tests/devices_test.ts"],
    { DEADLINE_FIXTURE_MS: "300" },
  );
  assertEquals(r.code, 1, r.text);
  match(
    r.text,
    /tests\/fixtures\/deadline_hang\.ts\s+died \(exit 124: a test passed its deadline\)/,
  );
  match(
    r.stdout,
    /\nFAILED TEST: tests\/fixtures\/deadline_hang\.ts: deadline fixture: a test that never ends\n/,
  );
  assert(r.stdout.endsWith("\n3 passed, 1 failed\n"), r.stdout.slice(-300));
}, { deadlineMs: 90_000 });

test("a file past its ceiling is killed with a thread dump and counted as a failure", async () => {
  const r = await runner(
    ["--ceiling=3", "tests/fixtures/deadline_hang.ts"],
    { DEADLINE_FIXTURE_MODE: "sync", DEADLINE_FIXTURE_MS: "600000" },
  );
  assertEquals(r.code, 1, r.text);
  assert(r.seconds < 60, `the runner took ${r.seconds} s`);
  match(r.text, /CEILING: tests\/fixtures\/deadline_hang\.ts still running after 3 s/);
  match(r.text, /threads of process \d+ \(\d+\):\n\s+tid\s+name.*\n\s+\d+\s+deno \(main\)/);
  match(r.stdout, /ceiling \(killed by SIGKILL\)/);
  assert(r.stdout.endsWith("\n0 passed, 1 failed\n"), r.stdout.slice(-300));
}, { deadlineMs: 90_000 });
