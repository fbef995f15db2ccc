/**
 * The process sandbox's frames (`src/sched/pipe_frame.ts`), property-based (fast-check, fixed
 * seeds):
 *
 * - a reply frame header of random words is either refused with a reason or describes a frame
 *   within the frame buffer's bounds, whose parts add up; the check never throws;
 * - a reply the child encodes is decoded into the core's channel as it was: status, numbers, JSON
 *   bytes; numbers past those sent read as NaN, which no answer accepts;
 * - a request the core encodes is decoded in the child as it was: ops and JSON bytes.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
// deno-lint-ignore no-import-prefix
import fc from "npm:fast-check@^4";
import {
  BYTES_CAP,
  createLocalChannel,
  H_NOPS,
  H_REP_BYTES,
  H_REQ_BYTES,
  H_STATUS,
  OP_STRIDE,
  OPS_CAP,
  REPLY_CAP,
} from "../src/sched/channel.ts";
import {
  decodeReply,
  decodeReplyHeader,
  decodeRequest,
  encodeReply,
  encodeRequest,
  REP_FRAME_CAP,
  REP_HEADER,
  replyBuffer,
  REQ_FRAME_CAP,
  requestBuffer,
  requestLength,
} from "../src/sched/pipe_frame.ts";

const int32 = fc.oneof(
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
  fc.integer({ min: -2, max: 2 * BYTES_CAP }),
  fc.constantFrom(0, REP_HEADER, REPLY_CAP, REPLY_CAP + 1, BYTES_CAP, BYTES_CAP + 1),
);

Deno.test("pipe frame: a random reply header is refused or within the frame's bounds", () => {
  const f = replyBuffer();
  let accepted = 0, refused = 0;
  fc.assert(
    fc.property(fc.array(int32, { minLength: 6, maxLength: 6 }), fc.boolean(), (w, consistent) => {
      for (let i = 0; i < 6; i++) f.words[i] = w[i];
      if (consistent) {
        // Half the cases add up, so that acceptance is exercised as well as refusal.
        f.words[3] = Math.abs(w[3]) % (REPLY_CAP + 1);
        f.words[4] = Math.abs(w[4]) % (BYTES_CAP + 1);
        f.words[5] = 0;
        f.words[0] = REP_HEADER + f.words[3] * 8 + f.words[4];
      }
      const h = decodeReplyHeader(f);
      if (typeof h === "string") {
        refused++;
        return;
      }
      accepted++;
      assert(h.words >= 0 && h.words <= REPLY_CAP, `words ${h.words}`);
      assert(h.bytes >= 0 && h.bytes <= BYTES_CAP, `bytes ${h.bytes}`);
      assertEquals(h.length, REP_HEADER + h.words * 8 + h.bytes);
      assert(h.length <= REP_FRAME_CAP && h.length <= f.bytes.length);
    }),
    { seed: 19, numRuns: 20_000 },
  );
  assert(accepted > 1000 && refused > 1000, `accepted ${accepted}, refused ${refused}`);
});

Deno.test("pipe frame: a reply crosses as it was sent; numbers not sent read NaN", () => {
  const child = createLocalChannel(), core = createLocalChannel();
  const out = replyBuffer(), into = replyBuffer();
  fc.assert(
    fc.property(
      fc.array(fc.double(), { maxLength: 64 }),
      fc.uint8Array({ maxLength: 256 }),
      fc.constantFrom(0, 1),
      fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
      (numbers, bytes, status, seq) => {
        for (let i = 0; i < numbers.length; i++) child.reply[i] = numbers[i];
        child.repBytes.set(bytes, 0);
        child.hdr[H_STATUS] = status;
        child.hdr[H_REP_BYTES] = bytes.length;
        const len = encodeReply(out, child, seq, numbers.length);
        into.bytes.set(out.bytes.subarray(0, len), 0);
        const h = decodeReplyHeader(into);
        if (typeof h === "string") throw new Error(h);
        assertEquals([h.length, h.seq, h.status, h.words, h.bytes], [
          len,
          seq,
          status,
          numbers.length,
          bytes.length,
        ]);
        core.reply.fill(7);
        decodeReply(into, h, core, 80);
        assertEquals([...core.reply.subarray(0, numbers.length)], numbers);
        for (let i = numbers.length; i < 80; i++) assert(Number.isNaN(core.reply[i]));
        assertEquals(core.repBytes.subarray(0, bytes.length), bytes);
        assertEquals([core.hdr[H_STATUS], core.hdr[H_REP_BYTES]], [status, bytes.length]);
      },
    ),
    { seed: 21, numRuns: 2_000 },
  );
});

Deno.test("pipe frame: a request crosses as it was sent", () => {
  const core = createLocalChannel(), child = createLocalChannel();
  const out = requestBuffer(), into = requestBuffer();
  fc.assert(
    fc.property(
      fc.array(fc.array(fc.double(), { minLength: OP_STRIDE, maxLength: OP_STRIDE }), {
        maxLength: 40,
      }),
      fc.uint8Array({ maxLength: 512 }),
      fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
      (ops, bytes, seq) => {
        ops.flat().forEach((x, i) => core.ops[i] = x);
        core.reqBytes.set(bytes, 0);
        const len = encodeRequest(out, core, seq, ops.length, bytes.length);
        assert(len <= REQ_FRAME_CAP);
        into.bytes.set(out.bytes.subarray(0, len), 0);
        assertEquals(requestLength(into), len);
        assertEquals(into.words[1], seq);
        decodeRequest(into, child);
        assertEquals([child.hdr[H_NOPS], child.hdr[H_REQ_BYTES]], [ops.length, bytes.length]);
        assertEquals([...child.ops.subarray(0, ops.length * OP_STRIDE)], ops.flat());
        assertEquals(child.reqBytes.subarray(0, bytes.length), bytes);
      },
    ),
    { seed: 23, numRuns: 2_000 },
  );
  // A header that does not describe a request is refused by the child.
  into.words[2] = OPS_CAP + 1;
  assertEquals(requestLength(into), null);
});
