/** The local APIC model: timer modes and divider, priorities, EOI, ICR decoding, errors. */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { DELIVERY, type Ipi, LocalApic, REG } from "../src/devices/lapic.ts";

function apic(id = 0) {
  let now = 1_000_000;
  const sent: Ipi[] = [];
  const a = new LocalApic(id, { now: () => now, sendIpi: (i) => sent.push(i) });
  a.write(REG.SVR, 0x1ff); // software enable, spurious vector 0xff
  return { a, sent, advance: (ns: number) => (now += ns), now: () => now };
}

Deno.test("one-shot timer: divide by 1 counts at 1 GHz and fires once", () => {
  const { a, advance, now } = apic();
  a.write(REG.TIMER_DIVIDE, 0xb); // divide by 1
  a.write(REG.LVT_TIMER, 0x40); // vector 0x40, one-shot, unmasked
  a.write(REG.TIMER_INITIAL, 10_000);
  assertEquals(a.timerDeadline, now() + 10_000);
  advance(4_000);
  assertEquals(a.read(REG.TIMER_CURRENT), 6_000);
  assertEquals(a.checkTimer(now()), false);
  advance(6_000);
  assertEquals(a.checkTimer(now()), true);
  assertEquals(a.deliverable(), 0x40);
  assertEquals(a.timerDeadline, 0);
  assertEquals(a.read(REG.TIMER_CURRENT), 0);
});

Deno.test("periodic timer with divide by 16 reloads on its grid", () => {
  const { a, advance, now } = apic();
  a.write(REG.TIMER_DIVIDE, 0x3); // divide by 16
  assertEquals(a.divisor, 16);
  a.write(REG.LVT_TIMER, 0x20000 | 0x41);
  a.write(REG.TIMER_INITIAL, 16_000); // 256 us period (above the 200 us floor)
  const first = a.timerDeadline;
  advance(256_000);
  assertEquals(a.checkTimer(now()), true);
  assertEquals(a.timerDeadline, first + 256_000);
  advance(640_000); // 384 us past the second expiry: coalesced, the next stays on the grid
  a.checkTimer(now());
  assertEquals(a.timerDeadline, first + 768_000);
});

Deno.test("masked timer expires without an interrupt", () => {
  const { a, advance, now } = apic();
  a.write(REG.TIMER_DIVIDE, 0xb);
  a.write(REG.LVT_TIMER, 0x10040);
  a.write(REG.TIMER_INITIAL, 100);
  advance(100);
  assertEquals(a.checkTimer(now()), false);
  assertEquals(a.deliverable(), -1);
});

Deno.test("priorities: TPR and in-service vectors block lower classes until EOI", () => {
  const { a } = apic();
  a.acceptFixed(0x51);
  a.acceptFixed(0x32);
  assertEquals(a.deliverable(), 0x51);
  a.acknowledge(0x51);
  assertEquals(a.deliverable(), -1, "0x32 is below the in-service class 5");
  a.eoi();
  assertEquals(a.deliverable(), 0x32);
  a.write(REG.TPR, 0x40);
  assertEquals(a.deliverable(), -1, "TPR class 4 blocks class 3");
  assertEquals(a.read(REG.PPR), 0x40);
});

Deno.test("a software-disabled APIC delivers nothing", () => {
  const { a } = apic();
  a.write(REG.SVR, 0xff);
  a.acceptFixed(0x40);
  assertEquals(a.deliverable(), -1);
});

Deno.test("ICR writes decode into IPIs; INIT de-assert is a no-op; illegal vectors set ESR", () => {
  const { a, sent } = apic();
  a.write(REG.ICR_HIGH, 3 << 24);
  a.write(REG.ICR_LOW, 0x4000 | 0x45);
  a.write(REG.ICR_LOW, 0x4500); // INIT, assert
  a.write(REG.ICR_LOW, 0x8500); // INIT level de-assert
  a.write(REG.ICR_LOW, 0x4608); // SIPI, page 8
  a.write(REG.ICR_LOW, 0xc0000 | 0x4000 | 0x46); // all excluding self
  assertEquals(sent.map((i) => [i.mode, i.vector, i.destination, i.shorthand]), [
    [DELIVERY.FIXED, 0x45, 3, 0],
    [DELIVERY.INIT, 0, 3, 0],
    [DELIVERY.SIPI, 8, 3, 0],
    [DELIVERY.FIXED, 0x46, 3, 3],
  ]);
  a.write(REG.ICR_LOW, 0x4005); // fixed vector 5: illegal
  assertEquals(sent.length, 4);
  a.write(REG.ESR, 0);
  assertEquals(a.read(REG.ESR), 1 << 5);
});

Deno.test("ID and version registers", () => {
  const { a } = apic(3);
  assertEquals(a.read(REG.ID), 3 << 24);
  assertEquals(a.read(REG.VERSION) & 0xff, 0x14);
});
