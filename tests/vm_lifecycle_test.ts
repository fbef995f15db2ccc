/** Several VMs at once, stopping one, and releasing everything on close. */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { KERNEL, procEntries, requireKernel, sleep, untilAdvanced } from "./helpers/vmm.ts";
import { Vmm } from "../mod.ts";
import { test } from "./helpers/deadline.ts";

test("two VMs at once keep separate consoles", async () => {
  await requireKernel();
  const vmm = await Vmm.create();
  try {
    const a = await vmm.createVm({
      name: "a",
      vcpus: 2,
      kernel: KERNEL,
      cmdline: "workload=hello",
    });
    const b = await vmm.createVm({
      name: "b",
      vcpus: 1,
      kernel: KERNEL,
      cmdline: "workload=hello",
    });
    await Promise.all([a.start(), b.start()]);
    const [ea, eb] = await Promise.all([a.wait(), b.wait()]);
    assertEquals(ea, { kind: "exit", status: 0 });
    assertEquals(eb, { kind: "exit", status: 0 });
    assert(a.console.every((l) => l.vm === "a"));
    assert(b.console.every((l) => l.vm === "b"));
    assert(a.consoleText().includes("hello from vcpu 1 of 2"));
    assert(b.consoleText().includes("hello from vcpu 0 of 1"));
    assert(!b.consoleText().includes("of 2"), "b's console has a's lines");
  } finally {
    await vmm.close();
  }
});

test("stopping one VM leaves the other running", async () => {
  await requireKernel();
  const vmm = await Vmm.create();
  try {
    const a = await vmm.createVm({ name: "a", kernel: KERNEL, cmdline: "workload=spin seconds=0" });
    const b = await vmm.createVm({ name: "b", kernel: KERNEL, cmdline: "workload=spin seconds=0" });
    await Promise.all([a.start(), b.start()]);
    await sleep(300);
    const exitA = await a.stop();
    assertEquals(exitA.kind, "stopped");
    assertEquals(a.state, "ended");
    assertEquals(b.state, "running");
    const before = (await untilAdvanced(b))[0];
    const after = (await untilAdvanced(b, [before]))[0];
    assert(after > before, `b's spin counter did not move after a stopped (${before} -> ${after})`);
  } finally {
    await vmm.close();
  }
});

/** Descriptions of this process's fds that point at KVM (/dev/kvm, VM and vCPU fds). */
function kvmFds(): string[] {
  const out = [];
  for (const fd of procEntries("fd")) {
    let link = "";
    try {
      link = Deno.readLinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // the fd readDir itself used
    }
    if (link === "/dev/kvm" || link.startsWith("anon_inode:kvm")) out.push(`${fd} -> ${link}`);
  }
  return out;
}

/** How many kvm_run mappings (of vCPU fds) this process has. */
function kvmMappings(): number {
  return Deno.readTextFileSync("/proc/self/maps").split("\n").filter((l) => l.includes("kvm-vcpu"))
    .length;
}

test("after close no fd, thread or worker is left", async () => {
  await requireKernel();
  // Warm up: the first Worker and FFI use start runtime threads that stay for the process.
  {
    const vmm = await Vmm.create();
    const vm = await vmm.createVm({ name: "warm", vcpus: 2, kernel: KERNEL });
    await vm.start();
    await vm.wait();
    await vmm.close();
  }
  await sleep(200);
  const tasks = procEntries("task").length;
  const vmm = await Vmm.create();
  const vms = [];
  for (const name of ["x", "y"]) {
    const vm = await vmm.createVm({
      name,
      vcpus: 2,
      kernel: KERNEL,
      cmdline: "workload=spin seconds=0",
    });
    await vm.start();
    vms.push(vm);
  }
  await sleep(100);
  assert(procEntries("task").length >= tasks + 4, "four EMT threads while running");
  const emtTids = vms.flatMap((vm) => vm.emtThreadIds());
  assertEquals(emtTids.filter((t) => t > 0).length, 4);
  // 2 VM fds + 4 vCPU fds (+ /dev/kvm), and one kvm_run mapping per vCPU.
  assert(kvmFds().length >= 6, `KVM fds while running: ${kvmFds()}`);
  assertEquals(kvmMappings(), 4, "one kvm_run mapping per vCPU while running");
  await vmm.close();
  for (const vm of vms) assertEquals(vm.state, "closed");
  // Worker threads exit asynchronously after terminate(). The EMTs' own threads must go; the
  // total may differ by a runtime thread (tokio's blocking pool grows and shrinks on its own).
  const alive = () => emtTids.filter((t) => procEntries("task").includes(String(t)));
  let leftTasks = procEntries("task").length;
  for (let i = 0; i < 50 && (alive().length || leftTasks > tasks); i++) {
    await sleep(20);
    leftTasks = procEntries("task").length;
  }
  assertEquals(alive(), [], "EMT threads left running");
  // Deno's runtime recycles its own eventfd/epoll/socket fds as Workers come and go, so the
  // check is on what the VMM opens: KVM fds and kvm_run mappings.
  assertEquals(kvmFds(), [], "KVM file descriptors left open");
  assertEquals(kvmMappings(), 0, "kvm_run mappings left");
  assert(leftTasks <= tasks + 1, `threads left running: ${leftTasks} now, ${tasks} before`);
});

test("a VM's EMT Workers run the next VM's vCPUs: reused, on their same threads, and close ends them", async () => {
  await requireKernel();
  const vmm = await Vmm.create();
  try {
    // Every vCPU spins for 1 s, so its EMT is still bound (its thread id published) when read:
    // a hello VM can end, and its EMTs unbind, before start() returns on a loaded host.
    const SPIN = "workload=spin seconds=1";
    const first = await vmm.createVm({ name: "first", vcpus: 2, kernel: KERNEL, cmdline: SPIN });
    await first.start();
    const firstTids = first.emtThreadIds();
    assertEquals(firstTids.filter((t) => t > 0).length, 2, `bound: ${firstTids}`);
    assertEquals(await first.wait(), { kind: "exit", status: 0 });
    await vmm.closeVm("first");
    assertEquals(vmm.emtWorkers, { created: 2, reused: 0, idle: 2 });
    // The next VM, with more vCPUs than are idle: two reused, one new; every vCPU comes up.
    const next = await vmm.createVm({ name: "next", vcpus: 3, kernel: KERNEL, cmdline: SPIN });
    await next.start();
    const nextTids = next.emtThreadIds();
    assertEquals(await next.wait(), { kind: "exit", status: 0 });
    assert(next.consoleText().includes("on 3 vcpus"), next.consoleText());
    assertEquals(vmm.emtWorkers, { created: 3, reused: 2, idle: 3 });
    assertEquals(nextTids.filter((t) => firstTids.includes(t)).length, 2, "same threads");
    // A VM that faults gives its Workers back too, and they run a VM after it.
    const bad = await vmm.createVm({ name: "bad", kernel: KERNEL, cmdline: "workload=triple" });
    await bad.start();
    assertEquals((await bad.wait()).kind, "fault");
    const after = await vmm.createVm({ name: "after", vcpus: 1, kernel: KERNEL });
    await after.start();
    assertEquals(await after.wait(), { kind: "exit", status: 0 });
  } finally {
    await vmm.close();
  }
  assertEquals(vmm.emtWorkers.idle, 0);
});
