/**
 * Deciding ahead on real KVM: with plugins that choose a slot's next vCPU while the current one
 * runs, the leaving EMT hands the slot over itself, never more EMTs are in guest mode than
 * slots, every vCPU runs, the trace shows the hand-offs, queued choices are revoked (wakes,
 * ticks, parameter changes, a hot-swap, a manual ejection, a VM stopped) without losing a
 * vCPU, and a plugin that lies in `queueNext` is ejected while the VMs run on.
 */
import { ok as assert } from "node:assert/strict";
import { iterations, KERNEL, sleep, until, untilAdvanced, withVmm } from "./helpers/vmm.ts";
import type { Vm, Vmm } from "../mod.ts";
import { GRANT_VIA, RECORD_BYTES, TRACE, type TraceData } from "../src/trace/events.ts";
import { test } from "./helpers/deadline.ts";

const PLUGINS = new URL("../plugins/", import.meta.url);
const plugin = (name: string) => new URL(name, PLUGINS).href;
const LIAR = new URL("./fixtures/kvm_plugins/lies_ahead.ts", import.meta.url).href;

/** Grants in a trace, by how they came about (`GRANT_VIA`). */
function grantsByVia(trace: TraceData): number[] {
  const dv = new DataView(trace.records);
  const via = [0, 0, 0];
  for (let o = 0; o + RECORD_BYTES <= trace.records.byteLength; o += RECORD_BYTES) {
    if (dv.getUint8(o + 22) === TRACE.grant) via[dv.getUint8(o + 23)]++;
  }
  return via;
}

/** The sleeper's completed sleeps (its vCPU 0 halts between them). */
const sleeps = (vm: Vm) => vm.stats()?.vcpus[0]?.rounds ?? 0n;

/** Every VM moves on: the spinners' iterations, the sleeper's sleeps. */
async function allMoveOn(vms: Vm[]): Promise<void> {
  for (const vm of vms) {
    if (vm.name === "s") {
      const n = sleeps(vm);
      await until(`${vm.name}: its sleeps go on`, () => sleeps(vm) > n);
    } else await untilAdvanced(vm, iterations(vm));
  }
}

function guestNs(vm: Vm): number {
  return vm.counters().reduce((s, c) => s + c.nsGuest, 0);
}

async function spinners(vmm: Vmm, names: string[], vcpus = 1): Promise<Vm[]> {
  const vms = [];
  for (const name of names) {
    vms.push(
      await vmm.createVm({ name, vcpus, kernel: KERNEL, cmdline: "workload=spin seconds=0" }),
    );
  }
  for (const vm of vms) await vm.start();
  return vms;
}

for (const policy of ["credit.ts", "credit2.ts"]) {
  for (const slots of [1, 2]) {
    test(`${policy}, 3 VMs x 2 vCPUs on ${slots} slot(s): hand-offs by the leaving EMT, never more in guest mode than slots`, async () => {
      await withVmm({ plugin: plugin(policy), slots }, async (vmm) => {
        const t0 = performance.now();
        const vms = await spinners(vmm, ["a", "b", "c"], 2);
        for (const vm of vms) await untilAdvanced(vm); // every vCPU ran: the slots went round
        // The slots never stall: guest time grows in every window of 250 ms (a hand-off to an
        // EMT that is never woken would hold a slot for ever), and every vCPU moves on again.
        for (let w = 0; w < 8; w++) {
          const g0 = vms.reduce((s, vm) => s + guestNs(vm), 0);
          await sleep(250);
          const g1 = vms.reduce((s, vm) => s + guestNs(vm), 0);
          assert(g1 > g0, `no guest time at all in window ${w} (a stalled slot)`);
        }
        for (const vm of vms) await untilAdvanced(vm, iterations(vm));
        const wallNs = (performance.now() - t0) * 1e6;
        assert(
          vmm.guestModeHighWater <= slots,
          `high-water ${vmm.guestModeHighWater} EMTs in guest mode with ${slots} slot(s)`,
        );
        const total = vms.reduce((s, vm) => s + guestNs(vm), 0);
        assert(
          total <= slots * wallNs * 1.02,
          `guest ${total / 1e6} ms > ${slots} x ${wallNs / 1e6}`,
        );
        const stats = await vmm.scheduler!.stats();
        const handed = stats.vcpus.reduce((s, v) => s + v.handedGrants, 0);
        const ahead = stats.vcpus.reduce((s, v) => s + v.aheadGrants, 0);
        assert(handed > 0, `no hand-off by a leaving EMT (${ahead} decided ahead)`);
        assert(stats.queued >= ahead, `${stats.queued} queued < ${ahead} granted ahead`);
        for (const v of stats.vcpus) assert(v.grants > 0, `${v.vm}/${v.index} never granted`);
        const via = grantsByVia(await vmm.scheduler!.trace());
        assert(via[GRANT_VIA.handed] > 0, `the trace shows no hand-off: ${via}`);
        console.log(
          `  grants: ${via[GRANT_VIA.pick]} by pickNext, ${via[GRANT_VIA.handed]} handed over, ` +
            `${via[GRANT_VIA.ahead]} decided ahead and granted by the core`,
        );
        assert(vmm.scheduler!.ejections.length === 0, JSON.stringify(vmm.scheduler!.ejections));
      });
    });
  }
}

test("queued choices are revoked by wakes, ticks, parameters, a hot-swap, an ejection and a VM stopped; nothing is lost", async () => {
  await withVmm({ plugin: plugin("credit2.ts"), slots: 1 }, async (vmm) => {
    const vms = await spinners(vmm, ["a", "b", "c"]);
    const sleeper = await vmm.createVm({
      name: "s",
      kernel: KERNEL,
      cmdline: "workload=sleep count=1000000 ms=3",
    });
    await sleeper.start();
    const all = [...vms, sleeper];
    const advanced = allMoveOn;
    await advanced(all);
    const sched = vmm.scheduler!;
    // Parameter changes, while choices are queued.
    for (let i = 0; i < 5; i++) {
      await sched.setParams("a", { weight: 256 + 128 * i });
      await sleep(20);
    }
    await advanced(all);
    const before = await sched.stats();
    assert(
      before.queued > 0 && before.revoked > 0,
      `queued ${before.queued}, revoked ${before.revoked}`,
    );
    // A hot-swap to credit and back (both decide ahead), then a manual ejection (rr, which
    // decides ahead too).
    await sched.swap(plugin("credit.ts"));
    await advanced(all);
    await sched.swap(plugin("credit2.ts"));
    await advanced(all);
    await sched.eject("test");
    await advanced(all);
    // A VM stopped while its vCPU may be queued or handed a slot: the others run on.
    await vms[1].stop();
    await advanced([vms[0], vms[2], sleeper]);
    await sleep(300);
    await advanced([vms[0], vms[2], sleeper]);
    assert(vmm.guestModeHighWater <= 1, `high-water ${vmm.guestModeHighWater} on 1 slot`);
    const after = await sched.stats();
    assert(after.vcpus.every((v) => v.vm !== "b"), "the stopped VM's vCPUs are gone");
    assert(after.revoked > before.revoked, `revoked ${before.revoked} -> ${after.revoked}`);
    const handed = after.vcpus.reduce((s, v) => s + v.handedGrants, 0);
    assert(handed > 0, "no hand-off by a leaving EMT");
    assert(sched.ejections.length === 1 && sched.ejections[0].reason === "manual");
  });
});

const LIES: Record<string, RegExp> = {
  running: /which is already running on slot 0/,
  slice: /a slice of 0 ns/,
  halted: /which is halted/,
  removed: /which does not exist/,
};

for (const [lie, said] of Object.entries(LIES)) {
  test(`a plugin that queues ${lie === "slice" ? "a bad slice" : `a ${lie} vCPU`} is ejected; the VMs run on`, async () => {
    const ejected: string[] = [];
    await withVmm({
      plugin: LIAR,
      params: { lie, honest: 20 },
      slots: 1,
      onEject: (info) => ejected.push(`${info.reason}: ${info.detail}`),
    }, async (vmm) => {
      const vms = await spinners(vmm, ["x", "y"]);
      const sleeper = await vmm.createVm({
        name: "s",
        kernel: KERNEL,
        cmdline: "workload=sleep count=1000000 ms=3",
      });
      await sleeper.start();
      if (lie === "removed") {
        const [gone] = await spinners(vmm, ["gone"]);
        await untilAdvanced(gone);
        await gone.stop();
      }
      await until(`the lying plugin (${lie}) ejected`, () => ejected.length > 0);
      assert(ejected.length === 1, `ejections: ${ejected}`);
      assert(/^invalid: queueNext\(slot 0\)/.test(ejected[0]), ejected[0]);
      assert(said.test(ejected[0]), ejected[0]);
      await allMoveOn([...vms, sleeper]);
      for (const vm of [...vms, sleeper]) assert(vm.state === "running", `${vm.name} ${vm.state}`);
      assert(vmm.guestModeHighWater <= 1, `high-water ${vmm.guestModeHighWater} on 1 slot`);
    });
  });
}
