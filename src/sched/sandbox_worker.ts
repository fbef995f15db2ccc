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
  EVENTS_CAP,
  H_NOPS,
  H_REP,
  H_REP_BYTES,
  H_REQ,
  H_SPIN_NS,
  H_STATUS,
  OP_ADD,
  OP_DESCHED,
  OP_EXTEND,
  OP_HALT,
  OP_INIT,
  OP_PARAMS,
  OP_PICK,
  OP_QUIT,
  OP_REMOVE,
  OP_STRIDE,
  OP_SYNC,
  OP_TICK,
  OP_WAKE,
  readJson,
  REASONS,
  REPLY_CAP,
  type ReplyJson,
  ST_FAULT,
  ST_OK,
  writeJson,
} from "./channel.ts";
import type {
  PolicyEvent,
  SchedContext,
  SchedParams,
  SchedulerPlugin,
  VcpuInfo,
} from "./contract.ts";
import {
  checkExtend,
  checkPick,
  checkTick,
  checkTickNs,
  checkVoid,
  checkWake,
  errorText,
  pluginFromModule,
} from "./load.ts";
import {
  atomicsLoad,
  atomicsNotify,
  atomicsStore,
  atomicsWait,
  isFiniteNumber,
  macrotask,
  now,
  preventDefault,
} from "./intrinsics.ts";
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

let asyncFault: string | null = null;
self.addEventListener("unhandledrejection", (e) => {
  preventDefault(e);
  asyncFault ??= `a promise the plugin started was rejected: ${errorText(e.reason)}`;
});
self.addEventListener("error", (e) => {
  preventDefault(e);
  asyncFault ??= `uncaught error in the plugin: ${errorText(e.error ?? e.message)}`;
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

/** Longest fault message sent (a longer one is cut): it must fit the reply side channel. */
const MESSAGE_CAP = 4000;

class HookFault {
  readonly message: string;
  constructor(
    readonly reason: "throw" | "invalid",
    readonly hook: string,
    message: string,
  ) {
    this.message = message.length > MESSAGE_CAP ? `${message.slice(0, MESSAGE_CAP)}...` : message;
  }
}

async function serve(ch: ChannelViews, plugin: SchedulerPlugin): Promise<void> {
  const { hdr, ops, reply, reqBytes, repBytes } = ch;
  let events: PolicyEvent[] = [];
  let dropped = 0;
  const report = (ev: PolicyEvent) => {
    if (events.length >= EVENTS_CAP) {
      dropped++;
      return;
    }
    const out: PolicyEvent = { kind: String(ev?.kind ?? "") };
    // Finite numbers only: JSON would turn NaN and the infinities into null.
    if (typeof ev?.vcpu === "number" && isFiniteNumber(ev.vcpu)) out.vcpu = ev.vcpu;
    if (typeof ev?.value === "number" && isFiniteNumber(ev.value)) out.value = ev.value;
    if (typeof ev?.detail === "string") out.detail = ev.detail;
    events.push(out);
  };
  let params: SchedParams = {};

  const call = (hook: string, f: () => unknown): unknown => {
    let r: unknown;
    try {
      r = f();
    } catch (err) {
      throw new HookFault("throw", hook, `${hook} threw ${errorText(err)}`);
    }
    return r;
  };
  const callVoid = (hook: string, f: () => unknown): void => {
    const bad = checkVoid(hook, call(hook, f));
    if (bad !== null) throw new HookFault("invalid", hook, bad);
  };

  /** Runs one batch; returns whether the core asked us to quit. */
  const runBatch = (): boolean => {
    const n = atomicsLoad(hdr, H_NOPS);
    let status = ST_OK;
    let json: ReplyJson | null = null;
    if (n > 0 && ops[(n - 1) * OP_STRIDE] === OP_QUIT) return true;
    let quit = false;
    try {
      if (asyncFault !== null) throw new HookFault("throw", "(async)", asyncFault);
      for (let i = 0; i < n; i++) {
        const o = i * OP_STRIDE;
        const op = ops[o];
        const a = ops[o + 1], b = ops[o + 2], c = ops[o + 3], d = ops[o + 4], e = ops[o + 5];
        const f = ops[o + 6];
        switch (op) {
          case OP_ADD: {
            const info = readJson(reqBytes, a, b) as VcpuInfo;
            if (plugin.addVcpu) callVoid("addVcpu", () => plugin.addVcpu!(info));
            break;
          }
          case OP_REMOVE:
            if (plugin.removeVcpu) callVoid("removeVcpu", () => plugin.removeVcpu!(a));
            break;
          case OP_HALT:
            callVoid("onHalt", () => plugin.onHalt(a, b, c, d));
            break;
          case OP_DESCHED:
            if (plugin.onDeschedule) {
              callVoid("onDeschedule", () => plugin.onDeschedule!(a, b, c, REASONS[d], e, f));
            }
            break;
          case OP_PARAMS: {
            const { target, params: p } = readJson(reqBytes, a, b) as {
              target: string;
              params: SchedParams;
            };
            if (target === "*") params = { ...params, ...p };
            if (plugin.setParams) callVoid("setParams", () => plugin.setParams!(target, p));
            break;
          }
          case OP_INIT: {
            const ctx = readJson(reqBytes, a, b) as Omit<SchedContext, "report">;
            params = { ...ctx.params };
            const context: SchedContext = { ...ctx, params: { ...params }, report };
            if (plugin.init) callVoid("init", () => plugin.init!(context));
            const t = checkTickNs(plugin);
            if (typeof t === "string") throw new HookFault("invalid", "tickNs", t);
            reply[0] = t;
            reply[1] = typeof plugin.extendSlice === "function" ? 1 : 0;
            break;
          }
          case OP_PICK: {
            const r = checkPick(call("pickNext", () => plugin.pickNext(a, b)));
            if (typeof r === "string") throw new HookFault("invalid", "pickNext", r);
            if (r === null) reply[0] = 0;
            else {
              reply[0] = r.reserved ? 2 : 1;
              reply[1] = r.vcpu;
              reply[2] = r.sliceNs;
            }
            break;
          }
          case OP_WAKE: {
            const r = checkWake(call("onWake", () => plugin.onWake(a, b)));
            if (typeof r === "string") throw new HookFault("invalid", "onWake", r);
            reply[0] = r;
            break;
          }
          case OP_TICK: {
            const r = plugin.onTick ? checkTick(call("onTick", () => plugin.onTick!(a))) : [];
            if (typeof r === "string") throw new HookFault("invalid", "onTick", r);
            if (r.length >= REPLY_CAP) {
              throw new HookFault("invalid", "onTick", `onTick returned ${r.length} slots`);
            }
            reply[0] = r.length;
            for (let k = 0; k < r.length; k++) reply[1 + k] = r[k];
            break;
          }
          case OP_EXTEND: {
            const r = plugin.extendSlice
              ? checkExtend(call("extendSlice", () => plugin.extendSlice!(a, b, c, d, e)))
              : null;
            if (typeof r === "string") throw new HookFault("invalid", "extendSlice", r);
            if (r === null) reply[0] = 0;
            else {
              reply[0] = 1;
              reply[1] = r;
            }
            break;
          }
          case OP_SYNC:
            break;
          case OP_QUIT:
            quit = true;
            break;
          default:
            throw new HookFault("invalid", "(channel)", `unknown opcode ${op}`);
        }
      }
    } catch (err) {
      status = ST_FAULT;
      const f = err instanceof HookFault
        ? err
        : new HookFault("throw", "(sandbox)", errorText(err));
      json = { fault: { reason: f.reason, hook: f.hook, message: f.message } };
      asyncFault = null;
    }
    if (events.length > 0 || dropped > 0) {
      if (dropped > 0) events.push({ kind: "dropped", value: dropped });
      json = { ...(json ?? {}), events };
      events = [];
      dropped = 0;
    }
    let len = 0;
    if (json !== null) {
      len = writeJson(repBytes, 0, json);
      if (len < 0) len = writeJson(repBytes, 0, { fault: json.fault });
    }
    atomicsStore(hdr, H_STATUS, status);
    atomicsStore(hdr, H_REP_BYTES, len);
    return quit;
  };

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
    const quit = runBatch();
    atomicsStore(hdr, H_REP, seq);
    atomicsNotify(hdr, H_REP);
    if (quit) return;
    if (now() - lastTurn >= BUSY_TURN_MS) {
      await macrotask();
      lastTurn = now();
    }
  }
}
