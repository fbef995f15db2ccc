/**
 * The built-ins the sandbox's channel code calls, taken once, when this module is evaluated.
 *
 * In the sandbox Worker this module is evaluated before the plugin's module is imported (it is
 * a static import of the Worker's entry; the plugin is imported later, by a computed
 * specifier). From then on the channel code calls these references and never looks a method up
 * on a global or a prototype: whatever the plugin later does to the realm (replace
 * `globalThis.Atomics` or `JSON`, redefine `performance.now` or a `MessagePort` accessor, which
 * the realm's freezing does not cover since they are globals and host objects, or try
 * `%TypedArray%.prototype`, which it does cover) changes nothing the channel code calls, and
 * nothing it calls is ever handed one of the channel's views.
 *
 * A method is taken "uncurried": `f(self, ...args)` calls the original method with `self` as
 * `this`, through a bound `Function.prototype.call`, so that no `call`, `apply` or `bind` is
 * looked up at call time (the same pattern as Node's and Deno's own "primordials").
 *
 * @module
 */

// deno-lint-ignore no-explicit-any
type AnyFn = (...args: any[]) => any;

const FunctionCall = Function.prototype.call;
const FunctionBind = Function.prototype.bind;
const ReflectApply = Reflect.apply;
const getOwnDescriptor = Object.getOwnPropertyDescriptor;
const getPrototypeOf = Object.getPrototypeOf;

/** `f(self, ...args)` calls the original `method` with `this` = `self`. */
function uncurry<T, A extends unknown[], R>(
  method: (this: T, ...args: A) => R,
): (self: T, ...args: A) => R {
  return ReflectApply(FunctionBind, FunctionCall, [method]) as (self: T, ...args: A) => R;
}

/** The getter of `name` on `proto`, uncurried; throws if there is none. */
function getter<T, R>(proto: object, name: string): (self: T) => R {
  const get = getOwnDescriptor(proto, name)?.get;
  if (get === undefined) throw new TypeError(`no getter ${name} to capture`);
  return uncurry(get as (this: T) => R);
}

/** The setter of `name` on `proto`, uncurried; throws if there is none. */
function setter<T, V>(proto: object, name: string): (self: T, value: V) => void {
  const set = getOwnDescriptor(proto, name)?.set;
  if (set === undefined) throw new TypeError(`no setter ${name} to capture`);
  return uncurry(set as (this: T, value: V) => void);
}

/** `Atomics.load`. */
export const atomicsLoad: typeof Atomics.load = Atomics.load;
/** `Atomics.store`. */
export const atomicsStore: typeof Atomics.store = Atomics.store;
/** `Atomics.wait`. */
export const atomicsWait: typeof Atomics.wait = Atomics.wait;
/** `Atomics.notify`. */
export const atomicsNotify: typeof Atomics.notify = Atomics.notify;

/** `Number.isFinite`. */
export const isFiniteNumber: (n: unknown) => boolean = Number.isFinite;
/** `Number.isInteger`. */
export const isInteger: (n: unknown) => boolean = Number.isInteger;

/** `JSON.parse`. */
export const jsonParse: (text: string) => unknown = JSON.parse;
/** `JSON.stringify`. */
export const jsonStringify: (value: unknown) => string | undefined = JSON.stringify;

/** The `Int32Array` constructor. */
export const Int32ArrayCtor: Int32ArrayConstructor = Int32Array;
/** The `Float64Array` constructor. */
export const Float64ArrayCtor: Float64ArrayConstructor = Float64Array;
/** The `Uint8Array` constructor. */
export const Uint8ArrayCtor: Uint8ArrayConstructor = Uint8Array;

const TypedArrayPrototype = getPrototypeOf(Uint8Array.prototype) as object;
/** `%TypedArray%.prototype.length`, for a `Uint8Array`. */
export const u8Length: (self: Uint8Array) => number = getter(TypedArrayPrototype, "length");
/** `%TypedArray%.prototype.set`, for a `Uint8Array`. */
export const u8Set: (self: Uint8Array, source: Uint8Array, offset: number) => void = uncurry(
  Uint8Array.prototype.set as (this: Uint8Array, source: Uint8Array, offset: number) => void,
);
/** `%TypedArray%.prototype.slice`, for a `Uint8Array` (a copy, in an unshared buffer). */
export const u8Slice: (self: Uint8Array, start: number, end: number) => Uint8Array = uncurry(
  Uint8Array.prototype.slice as (this: Uint8Array, start: number, end: number) => Uint8Array,
);

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const encode = uncurry(
  TextEncoder.prototype.encode as (this: TextEncoder, s: string) => Uint8Array,
);
const decode = uncurry(
  TextDecoder.prototype.decode as (this: TextDecoder, b: Uint8Array) => string,
);
/** UTF-8 encodes `text` (a fresh, unshared array). */
export function utf8Encode(text: string): Uint8Array {
  return encode(encoder, text);
}
/** UTF-8 decodes `bytes` (an unshared array; invalid sequences become U+FFFD). */
export function utf8Decode(bytes: Uint8Array): string {
  return decode(decoder, bytes);
}

const perfNow = ReflectApply(FunctionBind, Performance.prototype.now, [performance]) as () =>
  number;
/** `performance.now()`. */
export const now: () => number = perfNow;

/** `Event.prototype.preventDefault`, uncurried. */
export const preventDefault: (event: Event) => void = uncurry(
  Event.prototype.preventDefault as (this: Event) => void,
);

const PromiseCtor: PromiseConstructor = Promise;
const MessageChannelCtor: typeof MessageChannel = MessageChannel;
const port1Of = getter<MessageChannel, MessagePort>(MessageChannel.prototype, "port1");
const port2Of = getter<MessageChannel, MessagePort>(MessageChannel.prototype, "port2");
const portPost = uncurry(
  MessagePort.prototype.postMessage as (this: MessagePort, message: unknown) => void,
);
const portClose = uncurry(MessagePort.prototype.close as (this: MessagePort) => void);
const setOnMessage = setter<MessagePort, AnyFn | null>(MessagePort.prototype, "onmessage");

/**
 * A macrotask turn, as one `MessageChannel` round: lets the event loop dispatch what is pending
 * (`unhandledrejection`, finished async ops, a `terminate()`).
 */
export function macrotask(): Promise<void> {
  return new PromiseCtor<void>((resolve) => {
    const ch = new MessageChannelCtor();
    const a = port1Of(ch), b = port2Of(ch);
    setOnMessage(b, () => {
      portClose(a);
      portClose(b);
      resolve();
    });
    portPost(a, 0);
  });
}
