/**
 * The body of `realm.ts` without its import of SES: {@linkcode freezeRealm} calls the
 * `lockdown` and `harden` that SES installs on `globalThis` when it is evaluated. `realm.ts`
 * imports SES from npm first; the process sandbox (`sandbox_child.ts`), which runs with npm
 * turned off (`--no-npm`), has SES's bundled module imported by file before this one.
 *
 * @module
 */

/** The two functions SES installs on `globalThis`. */
interface SesGlobals {
  lockdown?: (options: Record<string, unknown>) => void;
  harden?: <T>(o: T) => T;
}

/** SES's `lockdown`; throws if SES was not evaluated in this realm. */
function lockdownFn(): NonNullable<SesGlobals["lockdown"]> {
  const g = globalThis as unknown as SesGlobals;
  if (typeof g.lockdown !== "function") {
    throw new TypeError("SES (lockdown) is not loaded in this realm");
  }
  return g.lockdown;
}

/** SES's `harden`, which `lockdown` installs; throws before it. */
function hardenFn(): <T>(o: T) => T {
  const g = globalThis as unknown as SesGlobals;
  if (typeof g.harden !== "function") throw new TypeError("SES's harden is not installed");
  return g.harden;
}

/** Whether the realm is frozen already (lockdown runs once per realm). */
let frozen = false;

/**
 * Freezes the current realm (SES `lockdown()`), then checks that the intrinsics the channel
 * code relies on are frozen. Throws if lockdown fails or leaves one of them writable: a sandbox
 * must then refuse to load the plugin. Idempotent.
 */
export function freezeRealm(): void {
  if (frozen) return;
  const lockdown = lockdownFn();
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
  const harden = hardenFn();
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
  hardenFn()(performance);
}
