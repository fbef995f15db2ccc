/**
 * Exits per second of one EMT on a guest doing ring-3 port writes in a loop (`portio`),
 * against a C KVM_RUN loop (`bench/baseline/kvm_loop`) and QEMU with KVM on the same image.
 * Every runner is measured the same way: the guest counts its own writes against its TSC
 * and prints `portio: W writes in T us, R writes/s`.
 */
import { Vmm } from "../mod.ts";
import { median } from "./stats.ts";

const ROOT = new URL("../", import.meta.url).pathname;
/** The guest kernel. */
export const KERNEL = `${ROOT}guests/build/kernel.elf`;
/** The C baseline. */
export const C_LOOP = `${ROOT}bench/baseline/build/kvm_loop`;

const RATE = /portio: (\d+) writes in (\d+) us, (\d+) writes\/s/;

function parseRate(text: string, who: string): number {
  const m = text.match(RATE);
  if (!m) throw new Error(`${who}: no portio line in output:\n${text.slice(-2000)}`);
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

/** One `portio` run in deno-vmm; returns the guest's writes/s. */
export async function denoVmmRate(seconds: number): Promise<number> {
  const vmm = await Vmm.create();
  try {
    const vm = await vmm.createVm({
      name: "portio",
      kernel: KERNEL,
      cmdline: `workload=portio seconds=${seconds}`,
    });
    await vm.start();
    const exit = await vm.wait();
    if (exit.kind !== "exit" || exit.status !== 0) {
      throw new Error(`deno-vmm: ${JSON.stringify(exit)}`);
    }
    return parseRate(vm.consoleText(), "deno-vmm");
  } finally {
    await vmm.close();
  }
}

async function commandRate(who: string, cmd: string, args: string[]): Promise<number> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return parseRate(text, who);
}

/** One `portio` run in the C loop. */
export async function cLoopRate(seconds: number, khz: number): Promise<number> {
  return await commandRate("C loop", C_LOOP, [
    KERNEL,
    `workload=portio seconds=${seconds} tsc_khz=${khz}`,
  ]);
}

/** One `portio` run in QEMU (KVM accelerated). */
export async function qemuRate(seconds: number, khz: number): Promise<number> {
  return await commandRate("QEMU", "qemu-system-x86_64", [
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
    `workload=portio seconds=${seconds} tsc_khz=${khz}`,
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
export async function benchExits(rounds = 5, seconds = 1): Promise<ExitsResult> {
  const khz = await tscKhz();
  const haveQemu = await available("qemu-system-x86_64", ["--version"]);
  const samples: Record<string, number[]> = { "C loop": [], "deno-vmm": [], "QEMU": [] };
  for (let i = 0; i < rounds; i++) {
    samples["C loop"].push(await cLoopRate(seconds, khz));
    samples["deno-vmm"].push(await denoVmmRate(seconds));
    if (haveQemu) samples["QEMU"].push(await qemuRate(seconds, khz));
  }
  const rates = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]));
  return {
    rates,
    vsC: rates["deno-vmm"] / rates["C loop"],
    vsQemu: haveQemu ? rates["deno-vmm"] / rates["QEMU"] : NaN,
    rounds,
  };
}
