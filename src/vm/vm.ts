/**
 * A VM as the main thread sees it: its KVM fds, guest memory, one EMT Worker per vCPU, its
 * console log, and its end (a guest exit status, a fault, or a stop).
 *
 * @module
 */
import { allocateGrantTable } from "../sched/grant_table.ts";
import type { EmtPool } from "../emt/emt_pool.ts";
import type { Scheduler } from "../sched/scheduler.ts";
import {
  allocateEchoChannel,
  type EchoClientInit,
  type EchoLoadOptions,
  type EchoResult,
  validateEchoLoad,
} from "../devices/echo.ts";
import type { Kvm, VcpuFd, VmFd } from "../kvm/kvm.ts";
import type { ShimLibrary } from "../../ffi/shim.ts";
import { mailboxBytes, Mailboxes } from "../emt/mailbox.ts";
import { EMT_BLOCK_SIZE, EMT_WORD, type EmtCounters, readCounters } from "../emt/shim_layout.ts";
import type { EmtInit, EmtMessage, VcpuFault } from "../emt/protocol.ts";
import { cpuidFor, setPvhEntryState } from "./cpu_setup.ts";
import { GuestMemory } from "./memory.ts";
import { loadPvhKernel } from "./pvh.ts";
import { type GuestStats, readGuestStats } from "./stats.ts";
import type { ResolvedVmConfig } from "./config.ts";

/** How a VM ended. */
export interface VmExit {
  /** `exit`: the guest wrote the debug-exit port; `fault`: a vCPU failed; `stopped`: by the host. */
  kind: "exit" | "fault" | "stopped";
  /** The guest's status (kind `exit`). */
  status?: number;
  /** The fault (kind `fault`). */
  fault?: VcpuFault;
}

/** A VM's lifecycle state. */
export type VmState = "created" | "running" | "paused" | "stopping" | "ended" | "closed";

/** One console line. */
export interface ConsoleLine {
  /** VM name. */
  vm: string;
  /** vCPU whose UART write ended the line. */
  vcpu: number;
  /** The text. */
  line: string;
  /** Wall-clock ms (Date.now) when the EMT saw the newline. */
  time: number;
}

/** Per-vCPU numbers of a VM, from the shim's counters. */
export interface VcpuCounters extends EmtCounters {
  /** vCPU index. */
  vcpu: number;
}

/** What the VM needs from its VMM. */
export interface VmHost {
  /** The KVM system handle. */
  kvm: Kvm;
  /** The main thread's shim. */
  shim: ShimLibrary;
  /** Path of the built shim (for the workers). */
  shimPath: string;
  /** The VMM-wide shim block. */
  globalBlock: SharedArrayBuffer;
  /** KVM's supported CPUID table. */
  cpuid: import("../kvm/kvm.ts").CpuidEntry[];
  /** Console sink (besides the VM's log). */
  onConsole?: (line: ConsoleLine) => void;
  /** Log sink for EMT diagnostics. */
  onLog?: (message: string) => void;
  /** The VMM's scheduler, when slots are enforced. */
  scheduler?: Scheduler;
  /** The VMM's idle EMT Workers. */
  emts: EmtPool;
}

const CONSOLE_LOG_LIMIT = 10_000;

/** A virtual machine. Create it through `Vmm.createVm`. */
export class Vm {
  /** The resolved configuration. */
  readonly config: ResolvedVmConfig;
  /** The console lines so far (the newest {@linkcode CONSOLE_LOG_LIMIT}). */
  readonly console: ConsoleLine[] = [];
  /** Diagnostics the EMTs reported (unhandled accesses, ...). */
  readonly log: string[] = [];
  /** Wall-clock ms of start(), and of the first console line. */
  readonly timing: { startedAt?: number; firstConsoleAt?: number } = {};
  #host: VmHost;
  #vmFd: VmFd;
  #memory: GuestMemory;
  #vcpus: VcpuFd[] = [];
  #workers: Worker[] = [];
  /** Per Worker: it failed outside the EMT's loop (an uncaught error), so it is not reused. */
  #brokenWorkers: boolean[] = [];
  #emtBlocks: SharedArrayBuffer;
  #mailboxSab: SharedArrayBuffer;
  #mail: Mailboxes;
  #grantTable?: SharedArrayBuffer;
  #echo?: SharedArrayBuffer;
  #state: VmState = "created";
  #exit?: VmExit;
  #stoppedCount = 0;
  #ended: Promise<VmExit>;
  #resolveEnded!: (e: VmExit) => void;
  #endedWorkers: Promise<void>;
  #resolveWorkersDone!: () => void;

  /**
   * Creates the KVM VM, its memory and vCPUs, and loads the kernel. Use `Vmm.createVm`.
   * @param host the VMM's shared pieces
   * @param config the validated configuration
   * @param image the kernel image bytes
   */
  constructor(host: VmHost, config: ResolvedVmConfig, image: Uint8Array) {
    this.config = config;
    this.#host = host;
    this.#ended = new Promise((r) => this.#resolveEnded = r);
    this.#endedWorkers = new Promise((r) => this.#resolveWorkersDone = r);
    this.#emtBlocks = new SharedArrayBuffer(EMT_BLOCK_SIZE * config.vcpus);
    this.#mailboxSab = new SharedArrayBuffer(mailboxBytes(config.vcpus));
    this.#mail = new Mailboxes(this.#mailboxSab, config.vcpus);
    if (host.scheduler) this.#grantTable = allocateGrantTable(config.vcpus);
    // The echo device is wired for the workloads that use it: `echo`, and `fuzz`, which rings the
    // doorbell with any count it likes.
    if (/(^|\s)workload=(echo|fuzz)(\s|$)/.test(config.cmdline)) {
      this.#echo = allocateEchoChannel();
    }
    this.#vmFd = host.kvm.createVm();
    try {
      this.#vmFd.setTssAddr(0xfffbd000); // three pages below the BIOS area, as QEMU does
      this.#memory = GuestMemory.allocate(config.memoryBytes);
      this.#memory.attach(this.#vmFd);
      const cmdline = this.#fullCmdline();
      const kernel = loadPvhKernel(this.#memory, {
        image,
        cmdline,
        name: decodeURIComponent(config.kernel.pathname.split("/").pop() ?? "kernel"),
      });
      for (let i = 0; i < config.vcpus; i++) {
        const v = this.#vmFd.createVcpu(i);
        this.#vcpus.push(v);
        v.setCpuid(cpuidFor(host.cpuid, i));
      }
      setPvhEntryState(this.#vcpus[0], kernel.entry, kernel.startInfo);
    } catch (e) {
      this.#releaseKvm();
      throw e;
    }
  }

  /** The VM's name. */
  get name(): string {
    return this.config.name;
  }

  /** Lifecycle state. */
  get state(): VmState {
    return this.#state;
  }

  /** How it ended, once it has. */
  get exit(): VmExit | undefined {
    return this.#exit;
  }

  /** The command line the guest sees (with `ncpus` and `tsc_khz` appended). */
  #fullCmdline(): string {
    let c = this.config.cmdline.trim();
    const has = (k: string) => new RegExp(`(^|\\s)${k}=`).test(c);
    if (!has("ncpus")) c += ` ncpus=${this.config.vcpus}`;
    const khz = this.#vmFd.tscKhz();
    if (!has("tsc_khz") && khz > 0) c += ` tsc_khz=${khz}`;
    return c.trim();
  }

  /** Starts one EMT Worker per vCPU. Resolves when every EMT is attached and running. */
  async start(): Promise<void> {
    if (this.#state !== "created") throw new Error(`vm ${this.name}: already ${this.#state}`);
    const scheduler = this.#host.scheduler;
    if (scheduler) {
      await scheduler.addVm({
        name: this.name,
        vcpus: this.config.vcpus,
        params: this.config.sched,
        table: this.#grantTable!,
        emtBlocks: this.#emtBlocks,
      });
    }
    this.#state = "running";
    this.timing.startedAt = performance.now();
    const ready: Promise<void>[] = [];
    for (let i = 0; i < this.config.vcpus; i++) {
      const worker = this.#host.emts.take();
      this.#workers.push(worker);
      this.#brokenWorkers.push(false);
      ready.push(
        new Promise((resolve) => {
          worker.onmessage = (ev: MessageEvent<EmtMessage>) => {
            if (ev.data.type === "ready" || ev.data.type === "stopped") resolve();
            this.#onMessage(ev.data);
          };
          worker.onerror = (ev) => {
            ev.preventDefault();
            this.#brokenWorkers[i] = true; // not reused
            this.#onMessage({
              type: "fault",
              vcpu: i,
              fault: {
                reason: "EMT worker error",
                message: `vm ${this.name} vcpu ${i}: EMT worker error: ${ev.message}`,
              },
            });
            this.#onMessage({ type: "stopped", vcpu: i });
            resolve();
          };
        }),
      );
      const init: EmtInit = {
        type: "init",
        vmName: this.name,
        vcpu: i,
        vcpus: this.config.vcpus,
        vcpuFd: this.#vcpus[i].fd,
        runMmapSize: this.#host.kvm.vcpuMmapSize,
        shimPath: this.#host.shimPath,
        emtBlocks: this.#emtBlocks,
        globalBlock: this.#host.globalBlock,
        mailboxes: this.#mailboxSab,
        start: i === 0 ? { kind: "pvh" } : { kind: "wait-for-sipi" },
        unhandled: this.config.unhandled,
        haltPollNs: this.config.haltPollNs,
        runSliceNs: this.config.runSliceNs,
        sched: scheduler
          ? {
            table: this.#grantTable!,
            doorbell: scheduler.doorbell,
            dispatch: scheduler.dispatchTable,
          }
          : undefined,
        echo: this.#echo,
      };
      worker.postMessage(init);
    }
    await Promise.all(ready);
  }

  #onMessage(m: EmtMessage): void {
    switch (m.type) {
      case "console": {
        const line: ConsoleLine = { vm: this.name, vcpu: m.vcpu, line: m.line, time: m.time };
        this.timing.firstConsoleAt ??= performance.now();
        this.console.push(line);
        if (this.console.length > CONSOLE_LOG_LIMIT) this.console.shift();
        this.#host.onConsole?.(line);
        break;
      }
      case "log":
        this.log.push(m.message);
        this.#host.onLog?.(m.message);
        break;
      case "exit":
        this.#exit ??= { kind: "exit", status: m.status };
        break;
      case "fault":
        this.#exit ??= { kind: "fault", fault: m.fault };
        this.log.push(m.fault.message);
        this.#host.onLog?.(m.fault.message);
        break;
      case "stopped":
        this.#stoppedCount++;
        // One EMT ending ends the VM: make sure the others follow.
        this.#requestStop();
        if (this.#stoppedCount === this.config.vcpus) this.#finish();
        break;
    }
  }

  #requestStop(): void {
    this.#mail.requestStop();
    this.#kickAll();
  }

  #finish(): void {
    // Each EMT left its loop and said so: its Worker can run the next VM's vCPU.
    this.#workers.forEach((w, i) => {
      if (this.#brokenWorkers[i]) w.terminate();
      else this.#host.emts.give(w);
    });
    this.#workers = [];
    this.#brokenWorkers = [];
    for (const v of this.#vcpus) v.close();
    this.#vcpus = [];
    this.#exit ??= { kind: "stopped" };
    if (this.#state !== "closed") this.#state = "ended";
    // Ordered after this VM's add-vm on the core's channel; errors only if the core is gone.
    this.#host.scheduler?.removeVm(this.name).catch(() => {});
    this.#resolveWorkersDone();
    this.#resolveEnded(this.#exit);
  }

  /**
   * Sends requests to the guest's `echo` workload for `options.seconds` (open or closed loop)
   * and resolves with latency and throughput measured by the host: arrival to answer.
   */
  async echoLoad(options: EchoLoadOptions): Promise<EchoResult> {
    if (!this.#echo) throw new Error(`vm ${this.name}: not running the echo workload`);
    validateEchoLoad(options);
    if (this.#state !== "running") throw new Error(`vm ${this.name}: not running`);
    const worker = new Worker(new URL("../devices/echo_client_worker.ts", import.meta.url), {
      type: "module",
      name: `echo client ${this.name}`,
    });
    try {
      const reply = new Promise<{ ok: boolean; result?: EchoResult; error?: string }>(
        (resolve, reject) => {
          worker.onmessage = (ev) => resolve(ev.data);
          worker.onerror = (ev) => {
            ev.preventDefault();
            reject(new Error(`echo client: ${ev.message}`));
          };
        },
      );
      const init: EchoClientInit = {
        shimPath: this.#host.shimPath,
        memAddress: this.#memory.hostAddress.toString(),
        mailboxes: this.#mailboxSab,
        vcpus: this.config.vcpus,
        emtBlocks: this.#emtBlocks,
        channel: this.#echo,
        load: options,
      };
      worker.postMessage(init);
      const r = await reply;
      if (!r.ok) throw new Error(`echo client: ${r.error}`);
      return r.result!;
    } finally {
      worker.terminate();
    }
  }

  /**
   * Pauses the VM: every EMT leaves guest mode and waits (under a scheduler its vCPUs give
   * their slots back). Guest time stands still; the LAPIC timers' deadlines do not.
   */
  pause(): void {
    if (this.#state !== "running") throw new Error(`vm ${this.name}: cannot pause, ${this.#state}`);
    this.#state = "paused";
    this.#mail.setPaused(true);
    this.#kickAll();
  }

  /** Resumes a paused VM. */
  resume(): void {
    if (this.#state !== "paused") throw new Error(`vm ${this.name}: not paused (${this.#state})`);
    this.#state = "running";
    this.#mail.setPaused(false);
    this.#kickAll();
  }

  /** Wakes every EMT and pokes it out of guest mode. */
  #kickAll(): void {
    const base = Deno.UnsafePointer.of(this.#emtBlocks)!;
    for (let i = 0; i < this.config.vcpus; i++) {
      const p = Deno.UnsafePointer.offset(base, i * EMT_BLOCK_SIZE)!;
      this.#host.shim.symbols.shim_wake(p);
      this.#host.shim.symbols.shim_poke(p);
    }
  }

  /** Resolves with how the VM ended (guest exit status, fault, or stop). */
  wait(): Promise<VmExit> {
    return this.#ended;
  }

  /** Stops the VM (every EMT leaves its loop) and waits until it has. */
  async stop(): Promise<VmExit> {
    if (this.#state === "created") {
      this.#exit ??= { kind: "stopped" };
      this.#state = "ended";
      this.#releaseVcpus();
      this.#resolveWorkersDone();
      this.#resolveEnded(this.#exit);
      return this.#exit;
    }
    if (this.#state === "running" || this.#state === "paused") this.#state = "stopping";
    this.#requestStop();
    await this.#endedWorkers;
    return this.#exit!;
  }

  /** Stops the VM if needed, then releases its memory and KVM fds. */
  async close(): Promise<void> {
    if (this.#state === "closed") return;
    await this.stop();
    this.#releaseKvm();
    this.#state = "closed";
  }

  #releaseVcpus(): void {
    for (const v of this.#vcpus) v.close();
    this.#vcpus = [];
  }

  #releaseKvm(): void {
    this.#releaseVcpus();
    this.#vmFd?.close();
    this.#memory?.free();
  }

  /** The guest's stats area (null until the guest set it up, or after close). */
  stats(): GuestStats | null {
    if (this.#state === "closed") return null;
    return readGuestStats(this.#memory, this.config.vcpus);
  }

  /** The shim's per-vCPU counters (exits by reason, halts, wakes, pokes, clocks). */
  counters(): VcpuCounters[] {
    return Array.from({ length: this.config.vcpus }, (_, i) => ({
      vcpu: i,
      ...readCounters(this.#emtBlocks, i * EMT_BLOCK_SIZE, this.#host.shim.symbols.shim_now_f64()),
    }));
  }

  /** Host thread id of each vCPU's EMT (0 before it started or after it stopped). */
  emtThreadIds(): number[] {
    const words = new Int32Array(this.#emtBlocks);
    return Array.from(
      { length: this.config.vcpus },
      (_, i) => Atomics.load(words, (i * EMT_BLOCK_SIZE) / 4 + EMT_WORD.tid),
    );
  }

  /** Console text so far, one line per entry, without prefixes. */
  consoleText(): string {
    return this.console.map((l) => l.line).join("\n");
  }
}
