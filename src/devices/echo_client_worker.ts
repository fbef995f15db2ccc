/// <reference lib="deno.worker" />
/**
 * The echo load generator's thread: sends requests to a VM's `echo` workload on time (open
 * loop: Poisson arrivals; closed loop: clients that wait for their answer and think), then
 * reports latency and throughput. It writes the guest's echo page directly, posts the
 * interrupt through the VM's mailboxes and wakes the vCPU with the shim, as a device would.
 *
 * @module
 */
import { openShim } from "../../ffi/shim.ts";
import { Mailboxes } from "../emt/mailbox.ts";
import { ECHO_PAGE, ECHO_RING, ECHO_VECTOR, echoChannel } from "./echo.ts";
import type { EchoClientInit, EchoResult } from "./echo.ts";
import { Prng } from "../sim/prng.ts";

function run(init: EchoClientInit): EchoResult {
  const shim = openShim(init.shimPath).symbols;
  const now = () => shim.shim_now_f64();
  const page = new DataView(
    Deno.UnsafePointerView.getArrayBuffer(
      Deno.UnsafePointer.create(BigInt(init.memAddress) + BigInt(ECHO_PAGE))!,
      16,
    ),
  );
  const mail = new Mailboxes(init.mailboxes, init.vcpus);
  const vcpu0 = Deno.UnsafePointer.of(init.emtBlocks)!;
  const ch = echoChannel(init.channel);
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  const load = init.load;
  // The count of requests sent lives in the channel: the guest can write its page at will.
  let sent = Atomics.load(ch.words, 1);
  const first = sent;

  const send = (t: number) => {
    ch.arrivals[sent % ECHO_RING] = t;
    sent++;
    Atomics.store(ch.words, 1, sent);
    page.setBigUint64(0, BigInt(sent), true);
    mail.postFixed(0, ECHO_VECTOR, true);
    shim.shim_wake(vcpu0);
  };
  const waitUntil = (t: number) => {
    const ms = (t - now()) / 1e6;
    if (ms > 0) Atomics.wait(sleeper, 0, 0, ms);
  };

  const start = now();
  const end = start + load.seconds * 1e9;
  if (load.mode === "open") {
    const rate = load.ratePerSec ?? 1000;
    const rnd = new Prng(load.seed ?? 1);
    let t = start;
    for (;;) {
      t += rnd.exponential(1e9 / rate);
      if (t >= end) break;
      waitUntil(t);
      send(now());
    }
  } else {
    const clients = Math.max(1, load.clients ?? 1);
    const think = (load.thinkUs ?? 0) * 1e3;
    const ready: number[] = []; // times at which a client sends its next request
    let seen = Atomics.load(ch.words, 0); // before sending: an answer can beat the next line
    for (let i = 0; i < clients; i++) send(now());
    while (now() < end) {
      const done = Atomics.load(ch.words, 0);
      for (; seen < done; seen++) ready.push(ch.completions[seen % ECHO_RING] + think);
      ready.sort((a, b) => a - b);
      while (ready.length && ready[0] <= now()) {
        ready.shift();
        send(now());
      }
      const wakeAt = Math.min(end, ready.length ? ready[0] : end);
      const ms = (wakeAt - now()) / 1e6;
      if (ms > 0) Atomics.wait(ch.words, 0, done, ms);
    }
  }
  // Give answers in flight a moment (up to 100 ms) before measuring.
  const grace = now() + 100e6;
  while (Atomics.load(ch.words, 0) < sent && now() < grace) {
    Atomics.wait(ch.words, 0, Atomics.load(ch.words, 0), 5);
  }
  const completed = Math.min(Atomics.load(ch.words, 0), sent) - first;
  const lat: number[] = [];
  for (let i = first; i < first + completed; i++) {
    lat.push(ch.completions[i % ECHO_RING] - ch.arrivals[i % ECHO_RING]);
  }
  lat.sort((a, b) => a - b);
  const q = (p: number) =>
    lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : NaN;
  return {
    sent: sent - first,
    completed,
    throughput: completed / load.seconds,
    p50Ns: q(0.5),
    p99Ns: q(0.99),
    meanNs: lat.length ? lat.reduce((s, x) => s + x, 0) / lat.length : NaN,
    maxNs: lat.length ? lat[lat.length - 1] : NaN,
  };
}

self.onmessage = (ev: MessageEvent<EchoClientInit>) => {
  try {
    self.postMessage({ ok: true, result: run(ev.data) });
  } catch (e) {
    self.postMessage({ ok: false, error: (e as Error).message });
  }
};
