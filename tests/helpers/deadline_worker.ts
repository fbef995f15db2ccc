/// <reference lib="deno.worker" />
/**
 * The backstop of `deadline.ts`: a thread with its own event loop that still acts when the
 * main thread is stuck (a synchronous loop, a blocking FFI call) and its deadline timer cannot
 * fire. An armed test that is not disarmed {@linkcode BACKSTOP_GRACE_MS} after its deadline
 * gets its name and the thread dump written, then the process is killed (`Deno.exit` in a
 * Worker ends only the Worker).
 */
import {
  BACKSTOP_GRACE_MS,
  type BackstopMessage,
  currentTid,
  writeDeadlineReport,
} from "./deadline.ts";

const armed = new Map<number, ReturnType<typeof setTimeout>>();

self.onmessage = (ev: MessageEvent<BackstopMessage>) => {
  const m = ev.data;
  if (m.kind === "disarm") {
    clearTimeout(armed.get(m.id));
    armed.delete(m.id);
    return;
  }
  armed.set(
    m.id,
    setTimeout(() => {
      writeDeadlineReport(
        m.name,
        m.ms,
        `the main thread did not act ${BACKSTOP_GRACE_MS} ms after it: it is blocked; ` +
          "SIGKILL follows",
        m.labels,
      );
      Deno.kill(Deno.pid, "SIGKILL");
    }, m.ms + BACKSTOP_GRACE_MS),
  );
};
self.postMessage(currentTid());
