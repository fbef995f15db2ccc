/**
 * The per-test deadline of `tests/helpers/deadline.ts`: a test that never ends is reported by
 * name with a dump of the process's threads, and its process ends in bounded time, whether the
 * test awaits forever beside a spinning Worker or blocks its own thread.
 */
import { deepStrictEqual as assertEquals, match, ok as assert, throws } from "node:assert/strict";
import {
  DEADLINE_EXIT_CODE,
  DEADLINE_MARK,
  readThreads,
  test,
  threadDump,
} from "./helpers/deadline.ts";

const FIXTURE = new URL("./fixtures/deadline_hang.ts", import.meta.url).pathname;
const FIXTURE_TEST = "deadline fixture: a test that never ends";

/** Runs the fixture's never-ending test under a 300 ms deadline; its status, output, wall time. */
async function runFixture(mode: "async" | "sync") {
  const started = performance.now();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["test", "-A", "--unstable-worker-options", FIXTURE],
    env: { DEADLINE_FIXTURE_MODE: mode, DEADLINE_FIXTURE_MS: "300", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    signal: out.signal,
    text: dec.decode(out.stdout) + dec.decode(out.stderr),
    seconds: (performance.now() - started) / 1000,
  };
}

/** The rows of the first thread dump in `text`, and the pid it names. */
function dumpOf(text: string): { pid: number; rows: string[] } {
  const m = text.match(/threads of process (\d+) \((\d+)\):\n((?: {2}.*\n)+)/);
  assert(m, `no thread dump in:\n${text}`);
  const rows = m[3].trimEnd().split("\n").slice(1); // after the header row
  assertEquals(rows.length, Number(m[2]));
  return { pid: Number(m[1]), rows };
}

test(
  "a test that never settles, beside a spinning Worker: its name, a thread dump, exit 124",
  async () => {
    const r = await runFixture("async");
    assertEquals(r.code, DEADLINE_EXIT_CODE, r.text);
    assert(r.seconds < 60, `the process took ${r.seconds} s to end`);
    assert(r.text.includes(`${DEADLINE_MARK} ${FIXTURE_TEST}\n`), r.text);
    assert(r.text.indexOf(DEADLINE_MARK) < r.text.indexOf("threads of process"), r.text);
    const { pid, rows } = dumpOf(r.text);
    const main = rows.find((row) => row.trimStart().startsWith(`${pid} `));
    assert(main?.includes("(main)"), `no main thread row:\n${rows.join("\n")}`);
    assert(rows.some((row) => row.includes("(test JS)")), rows.join("\n"));
    assert(rows.some((row) => row.includes("(deadline backstop)")), rows.join("\n"));
    for (const row of rows) {
      match(
        row,
        /^\s+\d+\s.*\s[RSDTtZXIPW]\s+SCHED_\w+\s+\d+\s+-?\d+\s+\d+\s+\d+\.\d\d s/,
      );
    }
  },
  { deadlineMs: 90_000 },
);

test({
  name: "a test that blocks its own thread: the backstop thread dumps the threads and kills",
  deadlineMs: 90_000,
  fn: async () => {
    const r = await runFixture("sync");
    assertEquals(r.signal, "SIGKILL", r.text);
    assert(r.seconds < 60, `the process took ${r.seconds} s to end`);
    assert(r.text.includes(`${DEADLINE_MARK} ${FIXTURE_TEST}\n`), r.text);
    match(r.text, /the main thread did not act/);
    const { pid, rows } = dumpOf(r.text);
    assert(rows.some((row) => row.trimStart().startsWith(`${pid} `) && row.includes("(main)")));
    assert(rows.some((row) => row.includes("(test JS)")), rows.join("\n"));
  },
});

test("the thread dump reads this process: the main thread and the calling one", () => {
  const threads = readThreads();
  const main = threads.find((t) => t.main);
  assertEquals(main?.tid, Deno.pid);
  const self = Number(Deno.readLinkSync("/proc/thread-self").split("/").pop());
  const me = threads.find((t) => t.tid === self);
  assert(me, "the calling thread is listed");
  assertEquals(me.state, "R");
  assert(threads.every((t) => t.policy.startsWith("SCHED_") && t.cpuSeconds >= 0));
  match(
    threadDump("self", { [self]: "me" }),
    new RegExp(`\\n\\s+${self}\\s+\\S+ (\\(main\\) )?\\(me\\)`),
  );
  match(threadDump(2 ** 22 + 1), /cannot read \/proc\/\d+\/task/);
});

test("a deadline must be a positive number of milliseconds", () => {
  throws(() => test("bad", () => {}, { deadlineMs: 0 }), RangeError);
  throws(() => test({ name: "bad", fn: () => {}, deadlineMs: NaN }), RangeError);
});
