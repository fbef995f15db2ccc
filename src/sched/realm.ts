/**
 * Freezing the sandbox's realm before a plugin's module is imported: SES's `lockdown()` (the
 * `ses` package, Hardened JavaScript, from the Endo project) freezes every intrinsic reachable
 * from the JavaScript globals: the prototypes (`Object.prototype`, `Array.prototype`,
 * `%TypedArray%.prototype`, `Function.prototype`, ...), the constructors and the namespace
 * objects (`Atomics`, `JSON`, `Reflect`, `Math`), and makes their prototypes immutable. A
 * plugin can then no longer replace a method that the sandbox's channel code calls on the
 * channel's views, which is how it could take the channel's `SharedArrayBuffer` and write into
 * memory the trusted core reads.
 *
 * What lockdown leaves open, the channel code closes by itself (`intrinsics.ts`): the global
 * bindings stay writable (`globalThis.Atomics = ...`), and host objects such as `performance`
 * and `MessagePort.prototype` are not intrinsics. The core trusts none of it anyway
 * (`reply_reader.ts`).
 *
 * Every lockdown option is given here, never read from the environment: SES otherwise looks up
 * `LOCKDOWN_*` variables in `process.env`, which a Worker without `env` permission may not read.
 * Kept in a module of its own so that any sandbox (a Worker, a child process) can run it first.
 *
 * @module
 */
// Inline, not through deno.json's imports: this module is also loaded by URL (a remote mod.ts),
// where no import map applies.
// deno-lint-ignore no-import-prefix
import "npm:ses@^2.3.0";

/** Whether the realm is frozen already (lockdown runs once per realm). */
let frozen = false;

/**
 * Freezes the current realm (SES `lockdown()`), then checks that the intrinsics the channel
 * code relies on are frozen. Throws if lockdown fails or leaves one of them writable: a sandbox
 * must then refuse to load the plugin. Idempotent.
 */
export function freezeRealm(): void {
  if (frozen) return;
  lockdown({
    // Error stacks are hidden from the plugin (`stack` is empty); name and message stay.
    errorTaming: "safe",
    // The sandbox reports uncaught errors and rejections itself, as faults.
    errorTrapping: "none",
    unhandledRejectionTrapping: "none",
    // No "Removing unpermitted intrinsics" report on stderr at every start.
    reporting: "none",
    regExpTaming: "safe",
    localeTaming: "safe",
    // Deno's console as it is: nothing of the channel goes through it.
    consoleTaming: "unsafe",
    // Assigning a property that a frozen prototype also has (`obj.toString = f`, `err.message =
    // m`) keeps working for the commonly assigned names, as SES does by default.
    overrideTaming: "moderate",
    overrideDebug: [],
    stackFiltering: "concise",
    // Deno has no Node domains: leave its `process` object alone.
    domainTaming: "unsafe",
    evalTaming: "safe-eval",
    legacyRegeneratorRuntimeTaming: "safe",
    __hardenTaming__: "safe",
  });
  // SES leaves SharedArrayBuffer and Atomics out of its intrinsics (it keeps them out of the
  // realms it makes, and leaves them as they are here): the channel is one and is driven by the
  // other, so freeze them too.
  harden(SharedArrayBuffer);
  harden(Atomics);
  frozen = true;
  const mustBeFrozen: [string, unknown][] = [
    ["Object.prototype", Object.prototype],
    ["Function.prototype", Function.prototype],
    ["Array.prototype", Array.prototype],
    ["%TypedArray%", Object.getPrototypeOf(Uint8Array)],
    ["%TypedArray%.prototype", Object.getPrototypeOf(Uint8Array.prototype)],
    ["Uint8Array.prototype", Uint8Array.prototype],
    ["Int32Array.prototype", Int32Array.prototype],
    ["Float64Array.prototype", Float64Array.prototype],
    ["SharedArrayBuffer", SharedArrayBuffer],
    ["SharedArrayBuffer.prototype", SharedArrayBuffer.prototype],
    ["Atomics", Atomics],
    ["JSON", JSON],
    ["Reflect", Reflect],
    ["Promise.prototype", Promise.prototype],
    ["Error.prototype", Error.prototype],
  ];
  for (const [name, o] of mustBeFrozen) {
    if (!Object.isFrozen(o)) throw new TypeError(`realm not frozen: ${name} is still writable`);
  }
}

/**
 * The global names a whole simulation's engine looks up while it runs (`sim_worker.ts`): the
 * ECMAScript constructors and namespaces, and the host objects it calls (`performance`,
 * `MessageChannel`). Lockdown freezes what they name, not the names themselves.
 */
const ENGINE_GLOBALS = [
  "Array",
  "ArrayBuffer",
  "Atomics",
  "BigInt",
  "Boolean",
  "DataView",
  "Date",
  "Error",
  "Float32Array",
  "Float64Array",
  "Function",
  "Int8Array",
  "Int16Array",
  "Int32Array",
  "Infinity",
  "JSON",
  "Map",
  "Math",
  "MessageChannel",
  "NaN",
  "Number",
  "Object",
  "Promise",
  "RangeError",
  "Reflect",
  "Set",
  "SharedArrayBuffer",
  "String",
  "Symbol",
  "TypeError",
  "Uint8Array",
  "Uint16Array",
  "Uint32Array",
  "WeakMap",
  "isFinite",
  "isNaN",
  "parseFloat",
  "parseInt",
  "performance",
  "structuredClone",
  "undefined",
] as const;

/**
 * Where a plugin shares its thread with trusted code that keeps running beside it (a whole
 * simulation in the sandbox Worker), the global names that code looks up are made read-only and
 * `performance` frozen, after {@linkcode freezeRealm}: a plugin that assigns one (`Math = ...`)
 * then fails to load instead of changing what the engine computes. The per-call sandbox does
 * not need it: its channel code holds its own references (`intrinsics.ts`).
 */
export function lockGlobals(): void {
  const g = globalThis as unknown as Record<string, unknown>;
  for (const name of ENGINE_GLOBALS) {
    const d = Object.getOwnPropertyDescriptor(g, name);
    if (d === undefined || !d.configurable) continue;
    Object.defineProperty(g, name, { value: g[name], writable: false, configurable: false });
  }
  harden(performance);
}
