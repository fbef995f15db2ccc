/** Misbehaving guests stop alone, with an error naming VM, vCPU, rip and reason. */
import { deepStrictEqual as assertEquals, match, ok as assert } from "node:assert/strict";
import { iterations, KERNEL, requireKernel, untilAdvanced } from "./helpers/vmm.ts";
import { Vmm } from "../mod.ts";
import { test } from "./helpers/deadline.ts";

async function faultBesideSpinner(cmdline: string, extra: Record<string, unknown> = {}) {
  await requireKernel();
  const vmm = await Vmm.create();
  try {
    const good = await vmm.createVm({
      name: "good",
      kernel: KERNEL,
      cmdline: "workload=spin seconds=0",
    });
    const bad = await vmm.createVm({ name: "bad", kernel: KERNEL, cmdline, ...extra });
    await good.start();
    await bad.start();
    const exit = await bad.wait();
    const before = iterations(good)[0];
    assertEquals(good.state, "running", "the other VM stopped too");
    const after = (await untilAdvanced(good, [before]))[0];
    assert(after > before, "the other VM made no progress after the fault");
    return { exit, log: bad.log };
  } finally {
    await vmm.close();
  }
}

test("a triple fault stops that VM alone, naming VM, vCPU, rip and reason", async () => {
  const { exit } = await faultBesideSpinner("workload=triple");
  assertEquals(exit.kind, "fault");
  assertEquals(exit.fault?.reason, "triple fault");
  match(exit.fault!.message, /^vm bad vcpu 0: triple fault at rip 0x[0-9a-f]+/);
});

test("a KVM emulation failure stops that VM alone with a clear error", async () => {
  const { exit } = await faultBesideSpinner("workload=emufail");
  assertEquals(exit.kind, "fault");
  assertEquals(exit.fault?.reason, "KVM emulation failure");
  match(exit.fault!.message, /^vm bad vcpu 0: KVM emulation failure at rip 0x[0-9a-f]+/);
});

test("an unhandled MMIO write is logged with address, size and rip, and ignored", async () => {
  const { exit, log } = await faultBesideSpinner("workload=badmmio");
  assertEquals(exit, { kind: "exit", status: 0 });
  assert(
    log.some((l) =>
      /^vm bad vcpu 0: unhandled MMIO write 0x[0-9a-f]+ size \d+ .*at rip 0x[0-9a-f]+/.test(l)
    ),
    log.join("\n"),
  );
});

test("an unhandled MMIO write stops the VM when configured to", async () => {
  const { exit } = await faultBesideSpinner("workload=badmmio", { unhandled: "stop" });
  assertEquals(exit.kind, "fault");
  assertEquals(exit.fault?.reason, "unhandled access");
  match(
    exit.fault!.message,
    /^vm bad vcpu 0: unhandled access at rip 0x[0-9a-f]+: unhandled MMIO write/,
  );
});
