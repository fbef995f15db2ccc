/**
 * Exits per second of one EMT on a guest doing ring-3 writes in a loop, one exit each, against
 * a C KVM_RUN loop (`bench/baseline/kvm_loop`) and QEMU with KVM on the same image. Two
 * workloads: `portio` (OUT to a port; under PVM also through the guest kernel's #GP handler)
 * and `mmio` (stores to an unbacked page: straight to the VMM). Every runner is measured the
 * same way: the guest counts its own writes against its TSC and prints
 * `<workload>: W writes in T us, R writes/s`.
 */
import { Vmm } from "../mod.ts";
import { median } from "./stats.ts";

const ROOT = new URL("../", import.meta.url).pathname;
/** The guest kernel. */
export const KERNEL = `${ROOT}guests/build/kernel.elf`;
/** The C baseline. */
export const C_LOOP = `${ROOT}bench/baseline/build/kvm_loop`;

/** The exit workloads of the guest. */
export type ExitWorkload = "portio" | "mmio";

function parseRate(text: string, who: string, workload: ExitWorkload): number {
  const m = text.match(new RegExp(`${workload}: (\\d+) writes in (\\d+) us, (\\d+) writes/s`));
  if (!m) throw new Error(`${who}: no ${workload} line in output:\n${text.slice(-2000)}`);
  return Number(m[3]);
}

async function tscKhz(): Promise<number> {
  // The same value deno-vmm appends (KVM_GET_TSC_KHZ), so every runner's guest uses one clock.
  const { Kvm } = await import("../src/kvm/kvm.ts");
  const kvm = Kvm.open();
  const vm = kvm.createVm();
  const khz = vm.tscKhz();
  vm.close();
  kvm.close();
  return khz;
}

/** One run in deno-vmm; returns the guest's writes/s. */
export async function denoVmmRate(workload: ExitWorkload, seconds: number): Promise<number> {
  const vmm = await Vmm.create();
  try {
    const vm = await vmm.createVm({
      name: workload,
      kernel: KERNEL,
      cmdline: `workload=${workload} seconds=${seconds}`,
    });
    await vm.start();
    const exit = await vm.wait();
    if (exit.kind !== "exit" || exit.status !== 0) {
      throw new Error(`deno-vmm: ${JSON.stringify(exit)}`);
    }
    return parseRate(vm.consoleText(), "deno-vmm", workload);
  } finally {
    await vmm.close();
  }
}

async function commandRate(
  who: string,
  workload: ExitWorkload,
  cmd: string,
  args: string[],
): Promise<number> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return parseRate(text, who, workload);
}

/** One run in the C loop. */
export async function cLoopRate(
  workload: ExitWorkload,
  seconds: number,
  khz: number,
): Promise<number> {
  return await commandRate("C loop", workload, C_LOOP, [
    KERNEL,
    `workload=${workload} seconds=${seconds} tsc_khz=${khz}`,
  ]);
}

/** One run in QEMU (KVM accelerated). */
export async function qemuRate(
  workload: ExitWorkload,
  seconds: number,
  khz: number,
): Promise<number> {
  return await commandRate("QEMU", workload, "qemu-system-x86_64", [
    "-accel",
    "kvm",
    "-M",
    "q35",
    "-cpu",
    "host",
    "-m",
    "64",
    "-smp",
    "1",
    "-nographic",
    "-no-reboot",
    "-nodefaults",
    "-serial",
    "stdio",
    "-device",
    "isa-debug-exit,iobase=0xf4,iosize=0x04",
    "-kernel",
    KERNEL,
    "-append",
    `workload=${workload} seconds=${seconds} tsc_khz=${khz}`,
  ]);
}

async function available(cmd: string, args: string[]): Promise<boolean> {
  try {
    await new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).output();
    return true;
  } catch {
    return false;
  }
}

/** Result of {@linkcode benchExits}. */
export interface ExitsResult {
  /** The workload. */
  workload: ExitWorkload;
  /** Median writes/s per runner. */
  rates: Record<string, number>;
  /** deno-vmm / C loop. */
  vsC: number;
  /** deno-vmm / QEMU (NaN when QEMU is not installed). */
  vsQemu: number;
  /** Rounds run. */
  rounds: number;
}

/** Interleaves the runners `rounds` times (so drift on a noisy host hits all alike). */
export async function benchExits(
  workload: ExitWorkload,
  rounds = 5,
  seconds = 1,
): Promise<ExitsResult> {
  const khz = await tscKhz();
  const haveQemu = await available("qemu-system-x86_64", ["--version"]);
  const samples: Record<string, number[]> = { "C loop": [], "deno-vmm": [], "QEMU": [] };
  for (let i = 0; i < rounds; i++) {
    samples["C loop"].push(await cLoopRate(workload, seconds, khz));
    samples["deno-vmm"].push(await denoVmmRate(workload, seconds));
    if (haveQemu) samples["QEMU"].push(await qemuRate(workload, seconds, khz));
  }
  const rates = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]));
  return {
    workload,
    rates,
    vsC: rates["deno-vmm"] / rates["C loop"],
    vsQemu: haveQemu ? rates["deno-vmm"] / rates["QEMU"] : NaN,
    rounds,
  };
}
