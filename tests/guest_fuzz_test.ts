/**
 * Guest-side fuzzing, short and seeded (the long run is `deno task bench:fuzz-guest`): VMs running
 * the `fuzz` workload hammer every emulated device from every vCPU beside a spinning VM. Each
 * ends on its own with status 0 after all its accesses, the VMM logs a bounded number of lines,
 * INIT/SIPI restarts running vCPUs that come back, the spinner runs on, and a fresh VM boots
 * after. Plus the device-level regressions the fuzzer found.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { test } from "./helpers/deadline.ts";
import { requireKernel } from "./helpers/vmm.ts";
import { fuzzGuests } from "../bench/fuzz_guest.ts";
import { LocalApic, MIN_TIMER_PERIOD_NS } from "../src/devices/lapic.ts";
import type { Ipi } from "../src/devices/lapic.ts";
import { allocateEchoChannel, echoChannel, EchoDoorbell } from "../src/devices/echo.ts";

const SEEDS = [1, 2, 3];
const COUNT = 8_000;
const VCPUS = 3;

test("fuzzed guests end alone with status 0, the VMM and a VM beside them run on", async () => {
  await requireKernel();
  const r = await fuzzGuests({ seeds: SEEDS, count: COUNT, vcpus: VCPUS, sampleMs: 250 });
  assertEquals(r.seeds.map((s) => s.seed), SEEDS);
  for (const s of r.seeds) {
    const what = `seed ${s.seed}: ${JSON.stringify({ ...s, exit: s.exit })}`;
    assertEquals(s.exit, { kind: "exit", status: 0 }, what);
    assert(s.accesses >= COUNT * VCPUS, what);
    // Every class was exercised (class 2, INIT/SIPI, comes from vCPUs 1 and 2 only).
    assert(s.classes.every((n) => n > 0), what);
    assertEquals(s.classes.reduce((a, b) => a + b, 0), s.accesses, what);
    // Ignored accesses are logged at most 20 times per vCPU (the first line of a flood).
    assert(s.logLines <= 20 * VCPUS, what);
    assertEquals(s.summary, `fuzz: ${s.accesses} accesses on 3 vcpus`, what);
  }
  // INIT then SIPI at running vCPUs restarted them through the trampoline, and they finished.
  assert(r.seeds.reduce((n, s) => n + s.restarts, 0) > 0, "no vCPU was restarted by INIT/SIPI");
  assertEquals(r.neighbourState, "running");
  assert(
    r.neighbourRates.length > 0 && r.neighbourRates.every((x) => x > 0),
    "the spinner stalled",
  );
  assert(r.vmmAlive, "a VM booted after the fuzzing did not exit 0");
}, { deadlineMs: 110_000 });

function apic(sent: Ipi[]): LocalApic {
  let t = 0;
  return new LocalApic(0, { now: () => (t += 1000), sendIpi: (ipi) => sent.push(ipi) });
}

test("LAPIC: a write off a register's 16-byte boundary is ignored (no IPI from ICR + 4)", () => {
  const sent: Ipi[] = [];
  const a = apic(sent);
  a.write(0x310, 0x01000000);
  for (const off of [0x301, 0x302, 0x304, 0x308, 0x30c]) a.write(off, 0x4500); // INIT
  assertEquals(sent.length, 0);
  a.write(0x0f4, 0); // SVR + 4: the APIC stays as it was
  a.write(0x0f0, 0x1ff);
  a.write(0x0f8, 0);
  assert(a.enabled);
  assertEquals(a.read(0x0f4), 0);
  assertEquals(a.read(0x0f0), 0x1ff);
  a.write(0x300, 0x4500); // the register itself still works
  assertEquals(sent.length, 1);
  assertEquals(sent[0].mode, 5);
});

test("LAPIC: a periodic timer's period is at least MIN_TIMER_PERIOD_NS", () => {
  let now = 0;
  const a = new LocalApic(0, { now: () => now, sendIpi: () => {} });
  a.write(0x0f0, 0x1ff);
  a.write(0x3e0, 0xb); // divide by 1
  a.write(0x320, (1 << 17) | 0x20); // periodic, vector 0x20
  a.write(0x380, 1); // 1 ns asked
  assertEquals(a.timerDeadline, MIN_TIMER_PERIOD_NS);
  now = 10 * MIN_TIMER_PERIOD_NS + 5;
  assert(a.checkTimer(now));
  assertEquals(a.timerDeadline, 11 * MIN_TIMER_PERIOD_NS);
  a.write(0x320, 0x20); // one-shot keeps its exact count
  a.write(0x380, 3);
  assertEquals(a.timerDeadline, now + 3);
});

test("echo doorbell: a count beyond the requests sent answers those only, in bounded work", () => {
  const sab = allocateEchoChannel();
  const ch = echoChannel(sab);
  const bell = new EchoDoorbell(sab);
  Atomics.store(ch.words, 1, 5); // the host sent 5 requests
  bell.ring(0xffffffff, 42); // before the fix: four billion completions, every ring slot written
  assertEquals(Atomics.load(ch.words, 0), 5);
  assertEquals(Array.from(ch.completions.subarray(0, 6)), [42, 42, 42, 42, 42, 0]);
  assert(ch.completions.subarray(5).every((t) => t === 0), "completions beyond the requests sent");
  bell.ring(3, 43); // stale
  bell.ring(5, 44); // repeated
  assertEquals(Atomics.load(ch.words, 0), 5);
  Atomics.store(ch.words, 1, 7);
  bell.ring(-1 >>> 0, 45);
  assertEquals(Atomics.load(ch.words, 0), 7);
  assertEquals(ch.completions[6], 45);
});
