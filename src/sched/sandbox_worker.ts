/// <reference lib="deno.worker" />
/**
 * The sandbox Worker's entry: freezes its realm, then imports one plugin module (by a computed
 * specifier, so that Deno loads it with this Worker's permissions, which deny everything but
 * reading the plugin's own file) and serves batches of calls from the core over the shared
 * channel (`channel.ts`).
 *
 * Start-up, in this order: this module's static imports are evaluated (`intrinsics.ts` takes
 * its references to the built-ins the channel code calls), the realm is frozen (`realm.ts`:
 * SES `lockdown()`; if it fails, the Worker fails and the plugin is not loaded), the core posts
 * `{ sab, spec }`, the Worker makes its views of the channel, and only then imports `spec`,
 * checks the default export and posts `{ ok: true, name }` or `{ ok: false, error }`. So the
 * plugin's code first runs in a frozen realm, and nothing it can reach holds the channel. From
 * then on the Worker only talks through the channel: it spins briefly for the next request,
 * then sleeps in `Atomics.wait`. Every 10 ms while busy, and every 50 ms while idle, it yields
 * to its event loop, so that promise rejections the plugin caused (a denied `fetch`,
 * `Deno.connect`, dynamic `import()`) are seen and reported as a fault in the next reply.
 *
 * @module
 */
import {
  type ChannelViews,
  channelViews,
  DEBUG_CHANNEL_KEY,
  H_REP,
  H_REQ,
  H_SPIN_NS,
} from "./channel.ts";
import type { SchedulerPlugin } from "./contract.ts";
import { errorText, pluginFromModule } from "./load.ts";
import {
  atomicsLoad,
  atomicsNotify,
  atomicsStore,
  atomicsWait,
  macrotask,
  now,
  preventDefault,
} from "./intrinsics.ts";
import { type AsyncFaults, createBatchRunner } from "./sandbox_batch.ts";
import { freezeRealm } from "./realm.ts";

/** The start message from the core. */
interface StartMessage {
  sab: SharedArrayBuffer;
  spec: string;
  /** Tests only: hand the plugin the channel's buffer (`DEBUG_CHANNEL_KEY`). */
  debugChannel?: boolean;
}

/** How long the worker sleeps before it yields to its event loop when idle (ms). */
const IDLE_MS = 50;
/**
 * How often a busy worker yields to its event loop (ms). A turn (a MessageChannel round) costs
 * about 10 µs when a CPU is free, but needs Deno's helper threads: with every CPU busy it can
 * take a millisecond, so it is not done after every batch.
 */
const BUSY_TURN_MS = 10;

// The Worker's own functions, taken before the plugin is imported (see intrinsics.ts).
const postMessage = self.postMessage.bind(self);
const closeWorker = self.close.bind(self);

const faults: AsyncFaults = { message: null };
self.addEventListener("unhandledrejection", (e) => {
  preventDefault(e);
  faults.message ??= `a promise the plugin started was rejected: ${errorText(e.reason)}`;
});
self.addEventListener("error", (e) => {
  preventDefault(e);
  faults.message ??= `uncaught error in the plugin: ${errorText(e.error ?? e.message)}`;
});

// Before any message can arrive, so before the plugin's module exists. A failure is answered to
// the start message (this Worker's error listener would swallow an uncaught one).
let realmError: string | null = null;
try {
  freezeRealm();
} catch (err) {
  realmError = `cannot freeze the sandbox's realm: ${errorText(err)}`;
}

self.onmessage = async (e: MessageEvent<StartMessage>) => {
  self.onmessage = null;
  const { sab, spec, debugChannel } = e.data;
  if (realmError !== null) {
    postMessage({ ok: false, error: realmError });
    return;
  }
  const ch = channelViews(sab);
  if (debugChannel === true) {
    (globalThis as Record<symbol, unknown>)[Symbol.for(DEBUG_CHANNEL_KEY)] = sab;
  }
  let plugin: SchedulerPlugin;
  try {
    // A computed specifier: a string literal would be preloaded with the parent's permissions.
    // (`deno publish` warns that it cannot analyze this import: it is the user's plugin, known
    // only at run time, and there is nothing to rewrite. deno.json and publish_test know.)
    const mod = await import(spec);
    const p = pluginFromModule(mod);
    if (typeof p === "string") {
      postMessage({ ok: false, error: p });
      return;
    }
    plugin = p;
  } catch (err) {
    postMessage({ ok: false, error: errorText(err) });
    return;
  }
  const name = plugin.name;
  postMessage({ ok: true, name: typeof name === "string" ? name : "" });
  await serve(ch, plugin);
  closeWorker();
};

/** Serves batches until the core asks to quit. */
async function serve(ch: ChannelViews, plugin: SchedulerPlugin): Promise<void> {
  const { hdr } = ch;
  const runner = createBatchRunner(ch, plugin, faults);
  let seq = 0; // the core starts at 1 (it may already have sent it)
  let lastTurn = now();
  for (;;) {
    // Wait for the next request: spin, then sleep in Atomics.wait (a futex: reliable and fast;
    // Atomics.waitAsync here sometimes missed a wake-up for tens of ms). Every IDLE_MS of sleep
    // and every BUSY_TURN_MS of work, yield to the event loop once, so that promise rejections
    // the plugin caused are seen and a terminate() takes effect.
    const spinMs = atomicsLoad(hdr, H_SPIN_NS) / 1e6;
    const t0 = now();
    while (atomicsLoad(hdr, H_REQ) === seq && now() - t0 < spinMs) {
      // spin
    }
    while (atomicsLoad(hdr, H_REQ) === seq) {
      if (atomicsWait(hdr, H_REQ, seq, IDLE_MS) === "timed-out") {
        await macrotask();
        lastTurn = now();
      }
    }
    seq = atomicsLoad(hdr, H_REQ);
    const quit = runner.run();
    atomicsStore(hdr, H_REP, seq);
    atomicsNotify(hdr, H_REP);
    if (quit) return;
    if (now() - lastTurn >= BUSY_TURN_MS) {
      await macrotask();
      lastTurn = now();
    }
  }
}
