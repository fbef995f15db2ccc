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
 * Kept in a module of its own so that any sandbox (a Worker, a child process) can run it first;
 * the functions are in `realm_freeze.ts`, which a sandbox without npm imports after SES's file.
 *
 * @module
 */
// Inline, not through deno.json's imports: this module is also loaded by URL (a remote mod.ts),
// where no import map applies.
// deno-lint-ignore no-import-prefix
import "npm:ses@^2.3.0";

export { freezeRealm, lockGlobals } from "./realm_freeze.ts";
