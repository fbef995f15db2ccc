/**
 * The core's reader of sandbox replies (`src/sched/reply_reader.ts`) against hostile channels,
 * property-based (fast-check, fixed seeds):
 *
 * - random header words, reply numbers and side-channel bytes (random, JSON-shaped, mutated):
 *   the reader returns an answer that satisfies the contract's shape, or throws a
 *   `"corrupted channel"` fault, never anything else; it never indexes the reply numbers out
 *   of bounds; what it must refuse (a sequence, status or length out of range) it refuses, at
 *   the read, so the plugin is ejected when the corruption is seen and never after a wait;
 * - what the sandbox itself writes is always read back as written, never flagged.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
// deno-lint-ignore no-import-prefix
import fc from "npm:fast-check@^4";
import {
  BYTES_CAP,
  createChannel,
  EVENTS_CAP,
  H_NOPS,
  H_REP,
  H_REP_BYTES,
  H_REQ,
  H_REQ_BYTES,
  H_SPIN_NS,
  H_STATUS,
  OPS_CAP,
  REPLY_CAP,
  ST_FAULT,
  ST_OK,
  writeJson,
} from "../src/sched/channel.ts";
import { MIN_TICK_NS } from "../src/sched/load.ts";
import { nextSeq, prevSeq, ReplyReader, type SentRequest } from "../src/sched/reply_reader.ts";
import { PolicyFault } from "../src/sched/watchdog.ts";
import type { PolicyEvent } from "../src/sched/contract.ts";

const KINDS = ["void", "init", "pick", "wake", "tick", "extend"] as const;
type Kind = typeof KINDS[number];

/** A reader over a real channel whose reply numbers are watched for out-of-bounds reads. */
function setup() {
  const ch = createChannel();
  const oob: string[] = [];
  const reply = new Proxy(ch.reply, {
    get(target, key) {
      if (typeof key === "string" && /^-?\d/.test(key)) {
        const i = Number(key);
        if (!(Number.isInteger(i) && i >= 0 && i < REPLY_CAP)) oob.push(key);
        return target[i];
      }
      oob.push(`property ${String(key)}`); // the reader only indexes
      return Reflect.get(target, key, target);
    },
  });
  const reader = new ReplyReader({ hdr: ch.hdr, reply, repBytes: ch.repBytes });
  return { ch, reader, oob };
}

/** Reads one reply as the sandbox port does; returns the answer, or the fault thrown. */
function readAll(reader: ReplyReader, sent: SentRequest, kind: Kind) {
  if (!reader.answered(sent, "hook")) return { pending: true as const };
  const fault = reader.readStatus(sent, "hook");
  const events = reader.takeEvents();
  if (fault !== null) return { fault, events };
  let answer: unknown = undefined;
  if (kind === "init") answer = reader.init();
  else if (kind === "pick") answer = reader.pick();
  else if (kind === "wake") answer = reader.wake();
  else if (kind === "tick") answer = reader.tick();
  else if (kind === "extend") answer = reader.extend();
  reader.checkUnchanged(sent);
  return { answer, events };
}

/** Checks that an answer the reader accepted has the shape the contract promises. */
function checkAnswer(kind: Kind, a: unknown): void {
  if (kind === "void") return assertEquals(a, undefined);
  if (kind === "init") {
    const { tickNs, canExtend, canQueue, ratelimit } = a as {
      tickNs: number;
      canExtend: boolean;
      canQueue: boolean;
      ratelimit: boolean;
    };
    assert(typeof ratelimit === "boolean");
    assert(tickNs === 0 || (tickNs >= MIN_TICK_NS && Number.isFinite(tickNs)), `tickNs ${tickNs}`);
    assert(typeof canQueue === "boolean");
    return assert(typeof canExtend === "boolean");
  }
  if (kind === "pick") {
    if (a === null) return;
    const d = a as { vcpu: number; sliceNs: number; reserved?: boolean };
    assert(Number.isInteger(d.vcpu) && !Number.isNaN(d.sliceNs), JSON.stringify(d));
    return assert(d.reserved === undefined || d.reserved === true);
  }
  if (kind === "wake") return assert(Number.isInteger(a), `slot ${a}`);
  if (kind === "tick") {
    const s = a as number[];
    assert(Array.isArray(s) && s.length <= REPLY_CAP - 1);
    return assert(s.every((x) => Number.isInteger(x)));
  }
  if (a !== null) assert(typeof a === "number" && !Number.isNaN(a), `slice ${a}`);
}

function checkEvents(events: PolicyEvent[]): void {
  assert(events.length <= EVENTS_CAP + 1);
  for (const e of events) {
    assert(typeof e.kind === "string");
    assert(e.vcpu === undefined || Number.isFinite(e.vcpu));
    assert(e.value === undefined || Number.isFinite(e.value));
    assert(e.detail === undefined || typeof e.detail === "string");
    assert(Object.keys(e).every((k) => ["kind", "vcpu", "value", "detail"].includes(k)));
  }
}

const int32 = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
const sentArb = fc.record({
  seq: int32,
  nops: fc.integer({ min: 0, max: OPS_CAP }),
  bytes: fc.integer({ min: 0, max: BYTES_CAP }),
  spinNs: fc.nat({ max: 1_000_000 }),
});

/** A JSON-ish reply object: mostly the sandbox's shape, with wrong types and extra keys mixed in. */
const replyObject = fc.record(
  {
    fault: fc.oneof(
      fc.record({
        reason: fc.oneof(fc.constantFrom("throw", "invalid", "timeout", "manual"), fc.string()),
        hook: fc.oneof(fc.string(), fc.integer()),
        message: fc.oneof(fc.string(), fc.constant(null)),
      }, { requiredKeys: [] }),
      fc.jsonValue(),
    ),
    events: fc.oneof(
      fc.array(
        fc.oneof(
          fc.record({
            kind: fc.oneof(fc.string(), fc.integer()),
            vcpu: fc.oneof(fc.integer(), fc.double(), fc.string()),
            value: fc.oneof(fc.double(), fc.constant(null)),
            detail: fc.oneof(fc.string(), fc.boolean()),
            extra: fc.jsonValue(),
          }, { requiredKeys: [] }),
          fc.jsonValue(),
        ),
        { maxLength: 20 },
      ),
      fc.jsonValue(),
    ),
    other: fc.jsonValue(),
  },
  { requiredKeys: [] },
);

/** A reply object as the sandbox writes it. */
const soundObject = fc.record({
  fault: fc.record({
    reason: fc.constantFrom("throw", "invalid"),
    hook: fc.string({ maxLength: 12 }),
    message: fc.string({ maxLength: 40 }),
  }),
  events: fc.array(
    fc.record({
      kind: fc.string({ maxLength: 8 }),
      vcpu: fc.nat(100),
      value: fc.double({ noNaN: true, noDefaultInfinity: true }),
      detail: fc.string({ maxLength: 8 }),
    }, { requiredKeys: ["kind"] }),
    { maxLength: 5 },
  ),
}, { requiredKeys: [] });

/**
 * Side-channel bytes: none, the sandbox's own JSON, random bytes, JSON of a reply-ish object,
 * or such JSON mutated or cut.
 */
const bytesArb = fc.oneof(
  { weight: 2, arbitrary: fc.constant(new Uint8Array(0)) },
  { weight: 2, arbitrary: soundObject.map((o) => new TextEncoder().encode(JSON.stringify(o))) },
  fc.uint8Array({ maxLength: 600 }),
  replyObject.map((o) => new TextEncoder().encode(JSON.stringify(o))),
  fc.tuple(
    replyObject,
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
      maxLength: 4,
    }),
    fc.nat(),
  ).map(([o, flips, cut]) => {
    const b = new TextEncoder().encode(JSON.stringify(o));
    for (const [i, v] of flips) if (b.length > 0) b[i % b.length] = v;
    return b.subarray(0, b.length === 0 ? 0 : Math.max(1, b.length - (cut % 4)));
  }),
);

/** The header as a hostile sandbox could leave it: each word right, or anything. */
const headerArb = (sent: SentRequest) =>
  fc.record({
    rep: fc.oneof(fc.constant(sent.seq), fc.constant(prevSeq(sent.seq)), int32),
    req: fc.oneof({ weight: 9, arbitrary: fc.constant(sent.seq) }, int32),
    nops: fc.oneof({ weight: 9, arbitrary: fc.constant(sent.nops) }, int32),
    bytes: fc.oneof({ weight: 9, arbitrary: fc.constant(sent.bytes) }, int32),
    spin: fc.oneof({ weight: 9, arbitrary: fc.constant(sent.spinNs) }, int32),
    status: fc.oneof(fc.constantFrom(ST_OK, ST_FAULT), int32),
    /** `null`: the length of the bytes written. */
    len: fc.oneof(
      { weight: 6, arbitrary: fc.constant(null) },
      fc.integer({ min: -8, max: BYTES_CAP + 8 }),
      int32,
    ),
  });

/**
 * Reply numbers: doubles of every kind, or a tick-like count followed by slots. With `fill`,
 * every other reply number is slot 1 first, so that a count at or past the end would be read
 * through (an out-of-bounds read would show).
 */
const numbersArb = fc.oneof(
  fc.array(fc.double(), { minLength: 4, maxLength: 8 }),
  fc.array(fc.constantFrom(0, 1, 2, -1, 3, 0.5, NaN, Infinity, -0, MIN_TICK_NS, 1e300), {
    minLength: 4,
    maxLength: 8,
  }),
  fc.tuple(
    fc.oneof(
      fc.integer({ min: -2, max: REPLY_CAP + 2 }),
      fc.integer({ min: REPLY_CAP - 2, max: REPLY_CAP + 2 }),
      fc.double(),
    ),
    fc.array(fc.oneof(fc.nat(8), fc.double()), { maxLength: 8 }),
  ).map(([n, s]) => [n, ...s]),
).chain((numbers) => fc.record({ numbers: fc.constant(numbers), fill: fc.boolean() }));

const caseArb = sentArb.chain((sent) =>
  fc.record({
    sent: fc.constant(sent),
    hdr: headerArb(sent),
    bytes: bytesArb,
    numbers: numbersArb,
    kind: fc.constantFrom(...KINDS),
  })
);

Deno.test("reply reader: random channels end in an answer of the contract's shape or a corrupted-channel fault", () => {
  const { ch, reader, oob } = setup();
  const { hdr } = ch;
  let corrupted = 0, answered = 0;
  fc.assert(
    fc.property(caseArb, ({ sent, hdr: h, bytes, numbers, kind }) => {
      ch.repBytes.set(bytes, 0);
      if (numbers.fill) ch.reply.fill(1);
      for (let i = 0; i < numbers.numbers.length; i++) ch.reply[i] = numbers.numbers[i];
      const len = h.len ?? bytes.length;
      Atomics.store(hdr, H_REQ, h.req);
      Atomics.store(hdr, H_NOPS, h.nops);
      Atomics.store(hdr, H_REQ_BYTES, h.bytes);
      Atomics.store(hdr, H_SPIN_NS, h.spin);
      Atomics.store(hdr, H_STATUS, h.status);
      Atomics.store(hdr, H_REP_BYTES, len);
      Atomics.store(hdr, H_REP, h.rep);
      oob.length = 0;
      let r: ReturnType<typeof readAll> | null = null;
      try {
        r = readAll(reader, sent, kind);
      } catch (e) {
        // The only exception: the plugin's fault, named for what it is.
        if (!(e instanceof PolicyFault) || e.reason !== "corrupted channel") throw e;
        assert(e.message.startsWith("corrupted channel: "));
        reader.takeEvents();
        corrupted++;
      }
      assertEquals(oob, []);
      const seqOk = h.rep === sent.seq || h.rep === prevSeq(sent.seq);
      const coreWordsOk = h.req === sent.seq && h.nops === sent.nops &&
        h.bytes === sent.bytes && h.spin === sent.spinNs;
      // What must be refused is refused at the read.
      if (!seqOk || (h.rep !== sent.seq && !coreWordsOk)) assertEquals(r, null);
      if (h.rep === sent.seq) {
        if (h.status !== ST_OK && h.status !== ST_FAULT) assertEquals(r, null);
        if (len < 0 || len > BYTES_CAP) assertEquals(r, null);
        if (!coreWordsOk) assertEquals(r, null);
      }
      if (r === null || "pending" in r) return;
      answered++;
      checkEvents(r.events);
      if (r.fault) {
        assert(r.fault.reason === "throw" || r.fault.reason === "invalid");
        assert(typeof r.fault.hook === "string" && typeof r.fault.message === "string");
        assertEquals(h.status, ST_FAULT);
      } else {
        assertEquals(h.status, ST_OK);
        checkAnswer(kind, r.answer);
      }
    }),
    { seed: 21, numRuns: 30_000 },
  );
  // Both sides were reached.
  assert(corrupted > 1000 && answered > 300, `corrupted ${corrupted}, answered ${answered}`);
});

/** A reply as the sandbox writes it (`sandbox_worker.ts`), with the answer for `kind`. */
const soundArb = fc.record({
  seq: int32,
  kind: fc.constantFrom(...KINDS),
  fault: fc.option(
    fc.record({
      reason: fc.constantFrom("throw" as const, "invalid" as const),
      hook: fc.constantFrom("pickNext", "onWake", "onTick", "(async)"),
      message: fc.string({ maxLength: 200 }),
    }),
  ),
  events: fc.array(
    fc.record({
      kind: fc.string({ maxLength: 20 }),
      vcpu: fc.option(fc.integer({ min: 0, max: 1000 }), { nil: undefined }),
      value: fc.option(fc.double({ noNaN: true, noDefaultInfinity: true }), { nil: undefined }),
      detail: fc.option(fc.string({ maxLength: 50 }), { nil: undefined }),
    }, { requiredKeys: ["kind"] }),
    { maxLength: 10 },
  ),
  tickNs: fc.oneof(fc.constant(0), fc.integer({ min: MIN_TICK_NS, max: 1e9 })),
  canExtend: fc.boolean(),
  canQueue: fc.boolean(),
  ratelimit: fc.boolean(),
  pick: fc.option(
    fc.record({
      vcpu: fc.integer({ min: -5, max: 1e6 }),
      sliceNs: fc.double({ noNaN: true }),
      reserved: fc.boolean(),
    }),
  ),
  wake: fc.integer({ min: -1, max: 64 }),
  tick: fc.array(fc.integer({ min: -3, max: 64 }), { maxLength: 50 }),
  extend: fc.option(fc.double({ noNaN: true })),
});

Deno.test("reply reader: what the sandbox writes is read back as written, never flagged", () => {
  const { ch, reader, oob } = setup();
  const { hdr } = ch;
  fc.assert(
    fc.property(soundArb, (c) => {
      const sent = { seq: c.seq, nops: 3, bytes: 10, spinNs: 0 };
      Atomics.store(hdr, H_REQ, sent.seq);
      Atomics.store(hdr, H_NOPS, sent.nops);
      Atomics.store(hdr, H_REQ_BYTES, sent.bytes);
      Atomics.store(hdr, H_SPIN_NS, sent.spinNs);
      Atomics.store(hdr, H_REP, prevSeq(sent.seq));
      assertEquals(reader.answered(sent, "hook"), false); // pending, and intact
      const events = c.events.map((e) => JSON.parse(JSON.stringify(e)) as PolicyEvent);
      const json = c.fault === null && events.length === 0
        ? null
        : { ...(c.fault === null ? {} : { fault: c.fault }), ...(events.length ? { events } : {}) };
      const len = json === null ? 0 : writeJson(ch.repBytes, 0, json);
      if (c.fault === null) {
        const r = ch.reply;
        if (c.kind === "init") {
          [r[0], r[1], r[2], r[3]] = [
            c.tickNs,
            c.canExtend ? 1 : 0,
            c.canQueue ? 1 : 0,
            c.ratelimit ? 1 : 0,
          ];
        }
        if (c.kind === "pick") {
          if (c.pick === null) r[0] = 0;
          else [r[0], r[1], r[2]] = [c.pick.reserved ? 2 : 1, c.pick.vcpu, c.pick.sliceNs];
        }
        if (c.kind === "wake") r[0] = c.wake;
        if (c.kind === "tick") {
          r[0] = c.tick.length;
          c.tick.forEach((s, i) => r[1 + i] = s);
        }
        if (c.kind === "extend") {
          if (c.extend === null) r[0] = 0;
          else [r[0], r[1]] = [1, c.extend];
        }
      }
      Atomics.store(hdr, H_STATUS, c.fault === null ? ST_OK : ST_FAULT);
      Atomics.store(hdr, H_REP_BYTES, len);
      Atomics.store(hdr, H_REP, sent.seq);
      const r = readAll(reader, sent, c.kind);
      assert(!("pending" in r));
      assertEquals(oob, []);
      assertEquals(r.events, events);
      if (c.fault !== null) return assertEquals(r.fault, { ...c.fault });
      const want = {
        void: undefined,
        init: {
          tickNs: c.tickNs,
          canExtend: c.canExtend,
          canQueue: c.canQueue,
          ratelimit: c.ratelimit,
        },
        pick: c.pick === null
          ? null
          : c.pick.reserved
          ? { vcpu: c.pick.vcpu, sliceNs: c.pick.sliceNs, reserved: true }
          : { vcpu: c.pick.vcpu, sliceNs: c.pick.sliceNs },
        wake: c.wake,
        tick: c.tick,
        extend: c.extend,
      }[c.kind];
      assertEquals(r.answer, want);
    }),
    { seed: 21, numRuns: 5_000 },
  );
});

Deno.test("reply reader: between requests, a changed sequence word is a corrupted channel", () => {
  const { ch, reader } = setup();
  Atomics.store(ch.hdr, H_REQ, 7);
  Atomics.store(ch.hdr, H_REP, 7);
  reader.checkIdle(7, "pickNext");
  for (const [word, value] of [[H_REQ, 8], [H_REP, 8], [H_REP, 6], [H_REQ, -7]]) {
    Atomics.store(ch.hdr, H_REQ, 7);
    Atomics.store(ch.hdr, H_REP, 7);
    Atomics.store(ch.hdr, word, value);
    let fault: unknown = null;
    try {
      reader.checkIdle(7, "pickNext");
    } catch (e) {
      fault = e;
    }
    assert(fault instanceof PolicyFault && fault.reason === "corrupted channel", String(fault));
    assertEquals(fault.hook, "pickNext");
  }
});

Deno.test("reply reader: sequence numbers wrap as the int32 header words do", () => {
  const { ch, reader } = setup();
  const top = 2 ** 31 - 1;
  assertEquals(nextSeq(top), -(2 ** 31));
  assertEquals(prevSeq(-(2 ** 31)), top);
  const sent = { seq: nextSeq(top), nops: 1, bytes: 0, spinNs: 0 };
  Atomics.store(ch.hdr, H_REQ, sent.seq);
  Atomics.store(ch.hdr, H_NOPS, 1);
  Atomics.store(ch.hdr, H_REQ_BYTES, 0);
  Atomics.store(ch.hdr, H_SPIN_NS, 0);
  Atomics.store(ch.hdr, H_REP, top);
  assertEquals(reader.answered(sent, "pickNext"), false);
  Atomics.store(ch.hdr, H_REP, sent.seq);
  assertEquals(reader.answered(sent, "pickNext"), true);
});
