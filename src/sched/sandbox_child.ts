/**
 * The process sandbox's entry (`sandbox_process.ts` starts it): a `deno run` child with no
 * permission but reading the plugin's own file, npm and remote modules turned off. Its stdin and
 * stdout are the channel to the core (`pipe_frame.ts`); its stderr is the core's.
 *
 * Start-up, in this order: SES's bundled module was evaluated first (the main module the parent
 * builds imports it by file, then this one); this module's static imports are evaluated
 * (`intrinsics.ts` takes its references); this module takes its own references to stdin,
 * stdout and `Deno.exit`, sends the console's stdout methods to stderr and removes `Deno.stdin`
 * and `Deno.stdout` from the plugin's reach (a plugin writing to the channel could only ever
 * corrupt it, which the core reads as hostile input anyway); the realm is frozen
 * (`realm_freeze.ts`); then the plugin, named by the first argument, is imported, its shape
 * checked, and the first frame says whether it loaded. Then it serves batches: a blocking read
 * of a request frame, the batch (`sandbox_batch.ts`), a reply frame; every 10 ms of work it
 * yields to its event loop once, so that promise rejections the plugin caused are seen and
 * reported as a fault in the next reply. It exits when its stdin closes or the core says quit,
 * and dies by SIGKILL otherwise.
 *
 * @module
 */
import { DEBUG_CHANNEL_KEY, ST_FAULT, ST_OK } from "./channel.ts";
import { createLocalChannel } from "./channel.ts";
import type { SchedulerPlugin } from "./contract.ts";
import { errorText, pluginFromModule } from "./load.ts";
import {
  jsonStringify,
  macrotask,
  now,
  preventDefault,
  u8Length,
  Uint8ArrayCtor,
  utf8Encode,
} from "./intrinsics.ts";
import {
  decodeRequest,
  encodeReply,
  replyBuffer,
  REQ_HEADER,
  requestBuffer,
  requestLength,
} from "./pipe_frame.ts";
import { freezeRealm } from "./realm_freeze.ts";
import { type AsyncFaults, createBatchRunner } from "./sandbox_batch.ts";

/** How often a busy child yields to its event loop (ms), as the Worker does. */
const BUSY_TURN_MS = 10;

// This process's own channel functions, taken before the plugin is imported.
const stdin = Deno.stdin, stdout = Deno.stdout;
const readSync: (p: Uint8Array) => number | null = stdin.readSync.bind(stdin);
const writeSync: (p: Uint8Array) => number = stdout.writeSync.bind(stdout);
const exit: (code?: number) => never = Deno.exit;
const args = [...Deno.args];
const ch = createLocalChannel();
const request = requestBuffer();
const reply = replyBuffer();

// The console prints to stdout, which is the channel here: it prints to stderr instead.
const toStderr = console.error;
for (const name of ["log", "info", "debug", "dir", "dirxml", "table"] as const) {
  (console as unknown as Record<string, unknown>)[name] = toStderr;
}
for (const name of ["stdin", "stdout"]) {
  Object.defineProperty(Deno, name, { value: undefined, writable: false, configurable: false });
}

const faults: AsyncFaults = { message: null };
globalThis.addEventListener("unhandledrejection", (e) => {
  preventDefault(e);
  faults.message ??= `a promise the plugin started was rejected: ${errorText(e.reason)}`;
});
globalThis.addEventListener("error", (e) => {
  preventDefault(e);
  faults.message ??= `uncaught error in the plugin: ${errorText(e.error ?? e.message)}`;
});

/** Writes all of `bytes[0..len)` to stdout; exits when the core is gone. */
function writeAll(bytes: Uint8Array, len: number): void {
  let off = 0;
  while (off < len) {
    let n: number;
    try {
      n = writeSync(new Uint8ArrayCtor(bytes.buffer, off, len - off));
    } catch {
      exit(0);
    }
    off += n;
  }
}

/** Reads exactly `len` bytes into `bytes` at `off`; false at the end of stdin. */
function readExact(bytes: Uint8Array, off: number, len: number): boolean {
  while (len > 0) {
    let n: number | null;
    try {
      n = readSync(new Uint8ArrayCtor(bytes.buffer, off, len));
    } catch {
      return false;
    }
    if (n === null || n === 0) return false;
    off += n;
    len -= n;
  }
  return true;
}

/** Reads what stdin has into `bytes` (at least a byte, blocking); 0 at its end. */
function readSome(bytes: Uint8Array): number {
  try {
    return readSync(bytes) ?? 0;
  } catch {
    return 0;
  }
}

/** Sends the first frame: sequence 0, the plugin's name or why it did not load. */
function hello(json: { name: string } | { error: string }): void {
  const text = utf8Encode(jsonStringify(json) ?? "{}");
  const len = u8Length(text);
  ch.hdr[4] = "error" in json ? ST_FAULT : ST_OK; // H_STATUS
  ch.hdr[5] = len; // H_REP_BYTES
  for (let i = 0; i < len; i++) ch.repBytes[i] = text[i];
  writeAll(reply.bytes, encodeReply(reply, ch, 0, 0));
}

let realmError: string | null = null;
try {
  freezeRealm();
} catch (err) {
  realmError = `cannot freeze the sandbox's realm: ${errorText(err)}`;
}

async function main(): Promise<void> {
  const [spec, debug] = args;
  if (realmError !== null) return hello({ error: realmError });
  if (debug === "debug-channel") {
    // Tests only: a plugin that escaped could write anything to stdout; hand it a writer.
    (globalThis as Record<symbol, unknown>)[Symbol.for(DEBUG_CHANNEL_KEY)] = (b: Uint8Array) =>
      writeAll(b, u8Length(b));
  }
  let plugin: SchedulerPlugin;
  try {
    // A computed specifier, imported with this process's permissions (its own file only).
    const p = pluginFromModule(await import(spec));
    if (typeof p === "string") return hello({ error: p });
    plugin = p;
  } catch (err) {
    return hello({ error: errorText(err) });
  }
  const name = plugin.name;
  hello({ name: typeof name === "string" ? name : "" });
  const runner = createBatchRunner(ch, plugin, faults);
  let lastTurn = now();
  for (;;) {
    // One read takes the whole frame when it is all there (the core sends one, then waits).
    const got = readSome(request.bytes);
    if (got < REQ_HEADER && !readExact(request.bytes, got, REQ_HEADER - got)) return;
    const len = requestLength(request);
    if (len === null || len < got) return;
    if (!readExact(request.bytes, got, len - got)) return;
    const seq = request.words[1];
    decodeRequest(request, ch);
    const quit = runner.run();
    writeAll(reply.bytes, encodeReply(reply, ch, seq, runner.replyWords));
    if (quit) return;
    if (now() - lastTurn >= BUSY_TURN_MS) {
      await macrotask();
      lastTurn = now();
    }
  }
}

await main();
exit(0);
