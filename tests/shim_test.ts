/**
 * The C halt/wake shim on real threads and a real vCPU: halt deadlines, wakes that race
 * ahead of halts, pokes and run deadlines that get a spinning guest out of KVM_RUN.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { buildShim, openShim } from "../ffi/shim.ts";
import {
  COUNTER_COUNT,
  COUNTERS_OFFSET,
  EMT_BLOCK_SIZE,
  EMT_STATE,
  EMT_WORD,
  EXIT_REASONS,
  EXITS_OFFSET,
  GLOBAL_BLOCK_SIZE,
  HALT_RESULT,
  readCounters,
  RUN_RESULT,
} from "../src/emt/shim_layout.ts";
import { Kvm } from "../src/kvm/kvm.ts";
import { GuestMemory } from "../src/vm/memory.ts";
import { test } from "./helpers/deadline.ts";

const shimPath = await buildShim();
const shim = openShim(shimPath).symbols;

test("shim block layout matches src/emt/shim_layout.ts", () => {
  assert(shim.shim_layout(0) <= EMT_BLOCK_SIZE);
  assertEquals(shim.shim_layout(1), EMT_WORD.state * 4);
  assertEquals(shim.shim_layout(2), EMT_WORD.wakeToken * 4);
  assertEquals(shim.shim_layout(3), EMT_WORD.pokeRequest * 4);
  assertEquals(shim.shim_layout(4), EMT_WORD.tid * 4);
  assertEquals(shim.shim_layout(5), COUNTERS_OFFSET);
  assertEquals(shim.shim_layout(6), EXITS_OFFSET);
  assertEquals(shim.shim_layout(7), COUNTER_COUNT);
  assertEquals(shim.shim_layout(8), EXIT_REASONS);
  assert(shim.shim_layout(9) <= GLOBAL_BLOCK_SIZE);
});

test("halt returns at its absolute deadline, within 1 ms", () => {
  const block = new SharedArrayBuffer(EMT_BLOCK_SIZE);
  const e = Deno.UnsafePointer.of(block);
  assertEquals(shim.shim_attach(e, null, -1, null), 0);
  try {
    const lateness: number[] = [];
    for (let i = 0; i < 10; i++) {
      const deadline = shim.shim_now_f64() + 5e6;
      const r = shim.shim_halt(e, deadline, 0, 0);
      const late = shim.shim_now_f64() - deadline;
      assertEquals(r, HALT_RESULT.timeout);
      assert(late >= 0, `returned ${-late} ns before its deadline`);
      lateness.push(late);
    }
    lateness.sort((a, b) => a - b);
    console.log(
      `  median lateness ${(lateness[5] / 1e6).toFixed(3)} ms, max ${
        (lateness[9] / 1e6).toFixed(3)
      } ms`,
    );
    // The median must be within 1 ms; a noisy shared host may delay one or two wake-ups. Beside
    // stress-ng --cpu 1 the median read about 0.17 ms.
    assert(lateness[5] < 1e6, `median lateness ${lateness[5]} ns`);
    const c = readCounters(block, 0);
    assertEquals(c.halts, 10);
    assert(c.nsHalted >= 10 * 5e6);
  } finally {
    shim.shim_detach(e);
  }
});

test("a wake that races ahead of halt is never lost (1,000 races)", async () => {
  const rounds = 1000;
  const block = new SharedArrayBuffer(EMT_BLOCK_SIZE);
  const sync = new SharedArrayBuffer(4);
  const done = new Int32Array(sync);
  const worker = new Worker(new URL("./helpers/shim_worker.ts", import.meta.url), {
    type: "module",
  });
  const result = new Promise<{ timeouts: number }>((r) => worker.onmessage = (ev) => r(ev.data));
  worker.postMessage({ op: "halt-races", shimPath, block, sync, rounds });
  const e = Deno.UnsafePointer.of(block);
  // Wait for the worker to attach (its tid appears), then race.
  while (Atomics.load(new Int32Array(block), EMT_WORD.tid) === 0) {
    await new Promise((r) => setTimeout(r, 1));
  }
  for (let i = 0; i < rounds; i++) {
    // Odd rounds: wake at once, usually before the worker is back in halt (racing ahead);
    // even rounds: give it a moment to publish HALTED first.
    if (i % 2 === 0) {
      const spinUntil = performance.now() + 0.05;
      while (performance.now() < spinUntil) { /* spin */ }
    }
    shim.shim_wake(e);
    while (Atomics.load(done, 0) <= i) {
      const r = Atomics.wait(done, 0, i, 3000);
      if (r === "timed-out") throw new Error(`round ${i}: worker did not return from halt`);
    }
  }
  const { timeouts } = await result;
  worker.terminate();
  assertEquals(timeouts, 0);
  assertEquals(readCounters(block, 0).wakes, rounds);
});

test("wake_on moves a halted EMT to the slot's CPU before waking it", async () => {
  const cpus = navigator.hardwareConcurrency;
  const rounds = 8;
  const block = new SharedArrayBuffer(EMT_BLOCK_SIZE);
  const sync = new SharedArrayBuffer(4);
  const done = new Int32Array(sync);
  const worker = new Worker(new URL("./helpers/shim_worker.ts", import.meta.url), {
    type: "module",
  });
  const result = new Promise<{ seen: { cpu: number; allowed: string }[] }>((r) =>
    worker.onmessage = (ev) => r(ev.data)
  );
  worker.postMessage({ op: "wake-on", shimPath, block, sync, rounds });
  const e = Deno.UnsafePointer.of(block);
  while (Atomics.load(new Int32Array(block), EMT_WORD.tid) === 0) {
    await new Promise((r) => setTimeout(r, 1));
  }
  const targets = Array.from({ length: rounds }, (_, i) => (cpus - 1 - i % cpus + cpus) % cpus);
  for (let i = 0; i < rounds; i++) {
    // Let it reach its halt, so that the wake-up is a real one from the futex.
    while (Atomics.load(new Int32Array(block), EMT_WORD.state) !== EMT_STATE.halted) {
      await new Promise((r) => setTimeout(r, 1));
    }
    assertEquals(shim.shim_wake_on(e, targets[i]), 1);
    while (Atomics.load(done, 0) <= i) {
      if (Atomics.wait(done, 0, i, 3000) === "timed-out") throw new Error(`round ${i}: no return`);
    }
  }
  const { seen } = await result;
  worker.terminate();
  assertEquals(seen.map((s) => s.cpu), targets);
  assertEquals(seen.map((s) => s.allowed), targets.map(String));
});

/** A one-vCPU VM whose guest spins in real mode (`jmp $` at 0x1000). */
function spinningVm(kvm: Kvm) {
  const vm = kvm.createVm();
  vm.setTssAddr(0xfffbd000);
  const mem = GuestMemory.allocate(1 << 20);
  mem.attach(vm);
  mem.write(0x1000, new Uint8Array([0xeb, 0xfe])); // jmp $
  const vcpu = vm.createVcpu(0);
  const s = vcpu.getSregs();
  s.cs = { ...s.cs, base: 0n, selector: 0 };
  vcpu.setSregs(s);
  const r = vcpu.getRegs();
  r.rip = 0x1000n;
  vcpu.setRegs(r);
  return {
    vcpu,
    close() {
      vcpu.close();
      vm.close();
      mem.free();
    },
  };
}

async function runInWorker(
  kvm: Kvm,
  deadlineIn: number,
  whileRunning: (e: Deno.PointerObject) => number | undefined,
) {
  const g = spinningVm(kvm);
  const block = new SharedArrayBuffer(EMT_BLOCK_SIZE);
  const sync = new SharedArrayBuffer(4);
  const worker = new Worker(new URL("./helpers/shim_worker.ts", import.meta.url), {
    type: "module",
  });
  const result = new Promise<{ result: number; returnedAt: number; deadline: number }>((r) =>
    worker.onmessage = (ev) => r(ev.data)
  );
  worker.postMessage({
    op: "run-until-poked",
    shimPath,
    block,
    sync,
    vcpuFd: g.vcpu.fd,
    runSize: kvm.vcpuMmapSize,
    deadlineIn,
  });
  const words = new Int32Array(block);
  const e = Deno.UnsafePointer.of(block)!;
  // Wait until the guest is really in KVM_RUN, then let it spin a little.
  while (Atomics.load(words, EMT_WORD.state) !== EMT_STATE.guest) {
    await new Promise((r) => setTimeout(r, 1));
  }
  await new Promise((r) => setTimeout(r, 20));
  const pokedAt = whileRunning(e);
  const r = await result;
  worker.terminate();
  const counters = readCounters(block, 0);
  g.close();
  return { ...r, pokedAt, counters };
}

test("poke gets a spinning guest out of KVM_RUN within 1 ms", async () => {
  const kvm = Kvm.open();
  try {
    const samples: number[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await runInWorker(kvm, 0, (e) => {
        const t = shim.shim_now_f64();
        assertEquals(shim.shim_poke(e), 1, "the EMT was in guest mode: the poke signals it");
        return t;
      });
      assertEquals(r.result, RUN_RESULT.poked);
      assertEquals(r.counters.pokes, 1);
      samples.push(r.returnedAt - r.pokedAt!);
    }
    samples.sort((a, b) => a - b);
    console.log(`  poke latencies ${samples.map((x) => (x / 1e6).toFixed(3)).join(" ")} ms`);
    // Measured beside stress-ng --cpu 1 (12 runs of 5): medians 0.08-0.14 ms, max 0.19 ms.
    assert(samples[2] < 1e6, `median poke latency ${samples[2]} ns`);
  } finally {
    kvm.close();
  }
});

test("run returns at its deadline while the guest spins", async () => {
  const kvm = Kvm.open();
  try {
    const lateness: number[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await runInWorker(kvm, 100e6, () => undefined);
      assertEquals(r.result, RUN_RESULT.deadline);
      const late = r.returnedAt - r.deadline;
      assert(late >= 0, `returned ${-late} ns before the deadline`);
      assert(r.counters.nsGuest > 50e6, "the guest ran until the deadline");
      lateness.push(late);
    }
    lateness.sort((a, b) => a - b);
    console.log(`  returned ${lateness.map((x) => (x / 1e6).toFixed(2)).join(" ")} ms late`);
    // Measured beside stress-ng --cpu 1 (12 runs): 0.07-0.13 ms late. The host itself stalls a
    // thread for up to 6 ms now and then (bench/baseline/host_gaps), so the median of three.
    assert(lateness[1] < 5e6, `median ${lateness[1]} ns after the deadline`);
  } finally {
    kvm.close();
  }
});

test("a poke while not in guest mode is kept for the next run, no signal sent", () => {
  const block = new SharedArrayBuffer(EMT_BLOCK_SIZE);
  const e = Deno.UnsafePointer.of(block);
  assertEquals(shim.shim_poke(e), 0);
  assertEquals(Atomics.load(new Int32Array(block), EMT_WORD.pokeRequest), 1);
});
