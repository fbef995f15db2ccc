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

/**
 * In this process: the PSS (MB) each of `count` Workers adds, either EMTs (one VM of `count`
 * spinning vCPUs, 16 MiB of guest RAM) or bare Workers (`self.postMessage(1)`). Each kind must
 * be the first Workers of its process: memory a terminated Worker gave back to the allocator is
 * reused by the next ones, so measured after EMTs had run, bare Workers looked 4 MB cheaper
 * than they are.
 */
async function pssPerWorker(kind: "emt" | "bare", count: number): Promise<number> {
  const settle = () => new Promise((r) => setTimeout(r, 300));
  if (kind === "bare") {
    await settle();
    const b0 = pssKb();
    const src = `data:application/javascript,self.postMessage(1)`;
    const workers = Array.from({ length: count }, () => new Worker(src, { type: "module" }));
    await Promise.all(workers.map((w) => new Promise((r) => w.onmessage = r)));
    await settle();
    const b1 = pssKb();
    workers.forEach((w) => w.terminate());
    return (b1 - b0) / 1024 / count;
  }
  const vmm = await Vmm.create();
  try {
    await settle();
    const before = pssKb();
    const vm = await vmm.createVm({
      name: "mem",
      vcpus: count,
      memoryMiB: 16,
      kernel: KERNEL,
      cmdline: "workload=spin seconds=0",
    });
    await vm.start();
    await settle();
    const after = pssKb();
    await vm.stop();
    // Guest RAM the guest touched is counted in `after`; 16 MiB are mostly untouched.
    return (after - before) / 1024 / count;
  } finally {
    await vmm.close();
  }
}

/**
 * MB of PSS per vCPU worker (an 8-vCPU VM), and per bare Worker (the baseline), each measured in
 * a fresh process (`deno run bench/startup.ts --memory emt|bare N`).
 */
export async function memoryPerWorker(
  vcpus = 8,
): Promise<{ perVcpuMb: number; bareWorkerMb: number }> {
  const child = async (kind: string) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL(import.meta.url).pathname, "--memory", kind, String(vcpus)],
      stderr: "inherit",
    }).output();
    if (!out.success) throw new Error(`memory child ${kind} failed`);
    return Number(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1));
  };
  return { perVcpuMb: await child("emt"), bareWorkerMb: await child("bare") };
}

/** Medians of both start-up measurements. */
export async function benchStartup(rounds = 10) {
  const deno = await denoVmmFirstLine(rounds);
  const c = await cLoopFirstLine(rounds);
  return { denoVmmMs: median(deno), cLoopMs: median(c), ratio: median(deno) / median(c) };
}

if (import.meta.main && Deno.args[0] === "--memory") {
  const kind = Deno.args[1] === "bare" ? "bare" : "emt";
  console.log(await pssPerWorker(kind, Number(Deno.args[2] ?? 8)));
}
