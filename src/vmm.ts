/**
 * The VMM: one KVM system handle, the built shim, and the VMs created through it.
 *
 * @module
 */
import { EmtPool } from "./emt/emt_pool.ts";
import { buildShim, openShim, type ShimLibrary } from "../ffi/shim.ts";
import { type CpuidEntry, Kvm } from "./kvm/kvm.ts";
import { GLOBAL_BLOCK_SIZE, GLOBAL_WORD } from "./emt/shim_layout.ts";
import { ConfigError, readKernel, resolveVmConfig, type VmConfig } from "./vm/config.ts";
import { type ConsoleLine, Vm } from "./vm/vm.ts";
import { Scheduler, type SchedulerOptions } from "./sched/scheduler.ts";

/** Options of {@linkcode Vmm.create}. */
export interface VmmOptions {
  /** Path of the KVM device (default `/dev/kvm`). */
  kvmPath?: string;
  /** Receives every console line of every VM (default: none; each VM keeps its own log). */
  onConsole?: (line: ConsoleLine) => void;
  /**
   * Receives EMT diagnostics (unhandled accesses, faults) and notices (the first use that
   * builds the built-in guest kernel).
   */
  onLog?: (message: string) => void;
  /**
   * Enforce slots with this scheduler policy (`{ plugin: "plugins/credit.ts" }`). Without it
   * every EMT runs free and the host's thread scheduler decides (what a QEMU user has).
   */
  scheduler?: SchedulerOptions;
}

/**
 * A virtual machine monitor: create VMs, run them, close everything.
 *
 * @example Boot a two-vCPU VM and wait for its exit
 * ```ts
 * import { Vmm } from "@deno-vmm/deno-vmm";
 *
 * const vmm = await Vmm.create({ onConsole: (l) => console.log(`[${l.vm}] ${l.line}`) });
 * try {
 *   const vm = await vmm.createVm({ name: "a", vcpus: 2, cmdline: "workload=hello" });
 *   await vm.start();
 *   console.log(await vm.wait()); // { kind: "exit", status: 0 }
 * } finally {
 *   await vmm.close(); // stops every VM, releases every fd, mapping and worker
 * }
 * ```
 *
 * @example Two VMs sharing one slot under Xen's credit policy, weights 2:1
 * ```ts
 * import { Vmm } from "@deno-vmm/deno-vmm";
 *
 * // The built-in policy, wherever the package came from; a remote one needs its host granted.
 * const credit = new URL(import.meta.resolve("@deno-vmm/deno-vmm/plugins/credit"));
 * const allowImport = credit.protocol === "file:" ? [] : [credit.host];
 * const vmm = await Vmm.create({ scheduler: { plugin: credit.href, slots: 1, allowImport } });
 * for (const [name, weight] of [["a", 512], ["b", 256]] as const) {
 *   const vm = await vmm.createVm({ name, cmdline: "workload=spin seconds=2", sched: { weight } });
 *   await vm.start();
 * }
 * await new Promise((r) => setTimeout(r, 1000));
 * console.log((await vmm.scheduler!.stats()).vcpus); // a has run about twice as long as b
 * await Promise.all([...vmm.vms.values()].map((vm) => vm.wait()));
 * await vmm.close();
 * ```
 */
export class Vmm {
  #kvm: Kvm;
  #shim: ShimLibrary;
  #shimPath: string;
  #globalBlock = new SharedArrayBuffer(GLOBAL_BLOCK_SIZE);
  #cpuid: CpuidEntry[];
  #vms = new Map<string, Vm>();
  #options: VmmOptions;
  #closed = false;
  #scheduler?: Scheduler;
  #emts = new EmtPool();

  private constructor(kvm: Kvm, shimPath: string, options: VmmOptions) {
    this.#kvm = kvm;
    this.#shimPath = shimPath;
    this.#shim = openShim(shimPath);
    this.#cpuid = kvm.supportedCpuid();
    this.#options = options;
  }

  /**
   * Opens KVM and builds (or finds in the cache) the C shim. Throws a clear error when
   * `/dev/kvm` or a C compiler is missing.
   */
  static async create(options: VmmOptions = {}): Promise<Vmm> {
    const kvm = Kvm.open(options.kvmPath);
    try {
      const shimPath = await buildShim();
      const vmm = new Vmm(kvm, shimPath, options);
      if (options.scheduler) vmm.#scheduler = await Scheduler.start(options.scheduler, shimPath);
      return vmm;
    } catch (e) {
      kvm.close();
      throw e;
    }
  }

  /** The VMs, by name. */
  get vms(): ReadonlyMap<string, Vm> {
    return this.#vms;
  }

  /**
   * Creates a VM (memory, vCPUs, kernel loaded) without starting it. Throws
   * `ConfigError` naming the bad field, `ElfError` for an unusable kernel, or
   * `GuestKernelError` when the built-in kernel (the default) cannot be built.
   */
  async createVm(config: VmConfig): Promise<Vm> {
    if (this.#closed) throw new Error("this Vmm is closed");
    const resolved = await resolveVmConfig(config, "vm", { onBuild: this.#options.onLog });
    if (this.#vms.has(resolved.name)) {
      throw new ConfigError("name", `a VM named '${resolved.name}' already exists`);
    }
    const image = await readKernel(resolved.kernel);
    const vm = new Vm(
      {
        kvm: this.#kvm,
        shim: this.#shim,
        shimPath: this.#shimPath,
        globalBlock: this.#globalBlock,
        cpuid: this.#cpuid,
        onConsole: this.#options.onConsole,
        onLog: this.#options.onLog,
        scheduler: this.#scheduler,
        emts: this.#emts,
      },
      resolved,
      image,
    );
    this.#vms.set(resolved.name, vm);
    return vm;
  }

  /** The scheduler enforcing slots, if this VMM has one. */
  get scheduler(): Scheduler | undefined {
    return this.#scheduler;
  }

  /**
   * EMT Workers started and reused so far, and idle now: a VM's Workers go back to an idle pool
   * when it ends and run the next VM's vCPUs (see `src/emt/emt_pool.ts`).
   */
  get emtWorkers(): { created: number; reused: number; idle: number } {
    return this.#emts.stats;
  }

  /** The most EMTs that were ever in guest mode at once, across all VMs. */
  get guestModeHighWater(): number {
    return Atomics.load(new Int32Array(this.#globalBlock), GLOBAL_WORD.highWater);
  }

  /** Closes one VM and forgets it. */
  async closeVm(name: string): Promise<void> {
    const vm = this.#vms.get(name);
    if (!vm) return;
    await vm.close();
    this.#vms.delete(name);
  }

  /** Stops and closes every VM, then releases KVM and the shim. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#vms.values()].map((vm) => vm.close()));
    this.#vms.clear();
    this.#emts.close();
    await this.#scheduler?.close();
    this.#kvm.close();
  }
}
