/**
 * VM start to first console line, and memory per vCPU worker, with baselines from the same
 * run: the C loop's own start to first console line, and a bare Deno Worker's memory.
 */
import { Vmm } from "../mod.ts";
import { C_LOOP, KERNEL } from "./exits.ts";
import { median } from "./stats.ts";

/** ms from `vm.start()` to the first console line, `rounds` times, VMM already open. */
export async function denoVmmFirstLine(rounds: number): Promise<number[]> {
  const vmm = await Vmm.create();
  const out: number[] = [];
  try {
    for (let i = 0; i < rounds; i++) {
      const vm = await vmm.createVm({ name: `s${i}`, kernel: KERNEL, cmdline: "workload=hello" });
      let first = 0;
      const t0 = performance.now();
      const got = new Promise<void>((resolve) => {
        const poll = () =>
          vm.console.length > 0 ? (first = performance.now(), resolve()) : setTimeout(poll, 0);
        poll();
      });
      await vm.start();
      await got;
      await vm.wait();
      out.push(vm.timing.firstConsoleAt! - t0);
      void first;
      await vmm.closeVm(vm.name);
    }
  } finally {
    await vmm.close();
  }
  return out;
}

/** ms from spawning the C loop to its first byte on stdout. */
export async function cLoopFirstLine(rounds: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    const child = new Deno.Command(C_LOOP, {
      args: [KERNEL, "workload=hello"],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const reader = child.stdout.getReader();
    await reader.read();
    out.push(performance.now() - t0);
    reader.releaseLock();
    await child.stdout.cancel();
    await child.status;
  }
  return out;
}

function pssKb(): number {
  const text = Deno.readTextFileSync("/proc/self/smaps_rollup");
  return Number(text.match(/^Pss:\s+(\d+) kB/m)?.[1] ?? NaN);
}

/** MB of PSS per vCPU worker (an 8-vCPU VM), and per bare Worker (the baseline). */
export async function memoryPerWorker(
  vcpus = 8,
): Promise<{ perVcpuMb: number; bareWorkerMb: number }> {
  const vmm = await Vmm.create();
  try {
    await new Promise((r) => setTimeout(r, 200));
    const before = pssKb();
    const vm = await vmm.createVm({
      name: "mem",
      vcpus,
      memoryMiB: 16,
      kernel: KERNEL,
      cmdline: "workload=spin seconds=0",
    });
    await vm.start();
    await new Promise((r) => setTimeout(r, 500));
    const after = pssKb();
    await vm.stop();
    // Bare workers, same count, same run.
    const src = `data:application/javascript,self.postMessage(1)`;
    const b0 = pssKb();
    const workers = Array.from({ length: vcpus }, () => new Worker(src, { type: "module" }));
    await Promise.all(workers.map((w) => new Promise((r) => w.onmessage = r)));
    await new Promise((r) => setTimeout(r, 200));
    const b1 = pssKb();
    workers.forEach((w) => w.terminate());
    // Guest RAM touched by the guest is counted in `after`; 16 MiB are mostly untouched.
    return { perVcpuMb: (after - before) / 1024 / vcpus, bareWorkerMb: (b1 - b0) / 1024 / vcpus };
  } finally {
    await vmm.close();
  }
}

/** Medians of both start-up measurements. */
export async function benchStartup(rounds = 10) {
  const deno = await denoVmmFirstLine(rounds);
  const c = await cLoopFirstLine(rounds);
  return { denoVmmMs: median(deno), cLoopMs: median(c), ratio: median(deno) / median(c) };
}
