/**
 * The emulation thread (EMT) of one vCPU: its run loop, exit dispatch to the devices it
 * emulates, and interrupt injection. Runs inside its own Worker (`emt_worker.ts`); the loop
 * is synchronous and only leaves through the VM's stop flag.
 *
 * Interrupts without KVM's in-kernel irqchip (KVM API documentation, KVM_INTERRUPT and
 * `request_interrupt_window`): a deliverable vector is injected with KVM_INTERRUPT when the
 * last exit said `ready_for_interrupt_injection` and `if_flag`; otherwise the EMT sets
 * `request_interrupt_window` and KVM exits with KVM_EXIT_IRQ_WINDOW_OPEN as soon as the guest
 * can take it. A guest HLT reaches us as KVM_EXIT_HLT; with nothing deliverable the EMT
 * blocks in the shim's `halt` until an interrupt is posted or its LAPIC timer is due.
 *
 * Under a scheduler (`init.sched`) the EMT enters KVM_RUN only while it holds a grant that is
 * not revoked, and only until the grant's slice deadline (the shim's run deadline is the
 * earlier of the slice end and the LAPIC timer). It gives the grant back on halt, slice end,
 * revocation (the core pokes it out of guest mode) and guest yield, reporting the guest time it
 * used (the shim's ns-in-guest clock), and it waits for the next grant in the shim's `halt`.
 * From giving a grant back to taking the next its thread is real-time (`WaitPolicy` in
 * `host_threads.ts`), so that neither its wake-ups (a device interrupt, an IPI, its timer) nor
 * the rest of its give-back wait behind the vCPU running on the same host CPU (measured on
 * `io-vs-hog`: an echo request waited up to 6 ms just for its EMT to run).
 *
 * @module
 */
import { exitReasonName, KVM_EXIT, KVM_EXIT_IO_OUT, KVM_INTERNAL_ERROR } from "../kvm/constants.ts";
import { KVM_RUN } from "../kvm/structs.ts";
import { VcpuFd } from "../kvm/kvm.ts";
import { munmap } from "../kvm/libc.ts";
import { DELIVERY, type Ipi, LAPIC_BASE, LAPIC_SIZE, LocalApic } from "../devices/lapic.ts";
import { COM1_BASE, Uart16550 } from "../devices/uart.ts";
import { DEBUG_EXIT_PORT, DEBUG_EXIT_SIZE, DebugExit } from "../devices/debug_exit.ts";
import { LegacyPic } from "../devices/pic.ts";
import { ECHO_DOORBELL, EchoDoorbell } from "../devices/echo.ts";
import { setInitState, setSipiState } from "../vm/cpu_setup.ts";
import type { ShimLibrary } from "../../ffi/shim.ts";
import { Mailboxes } from "./mailbox.ts";
import { COUNTER, COUNTERS_OFFSET, EMT_BLOCK_SIZE, HALT_KIND, RUN_RESULT } from "./shim_layout.ts";
import {
  type Grant,
  GrantRecordEmt,
  SCHED_EVENT,
  type SchedEventType,
  WAKE_SOURCE,
} from "../sched/grant_table.ts";
import { WaitPolicy } from "../sched/host_threads.ts";
import { REALTIME_PRIORITY } from "../sched/affinity.ts";
import type { EmtInit, EmtMessage, VcpuFault } from "./protocol.ts";

/** Port the `portio` benchmark workload writes; accepted and ignored. */
export const BENCH_PORT = 0xf0;
/** Page the `mmio` benchmark workload stores to; accepted and ignored. */
export const BENCH_MMIO = 0xd1000000;
/** The guest's sys_yield writes here (guests/ABI.md): it gives up its slot. */
export const YIELD_PORT = 0xf8;
/** At most this many lines about ignored guest actions (unhandled accesses, IPI modes) are logged
 * per vCPU. */
const UNHANDLED_LOG_LIMIT = 20;

/** One vCPU's emulation thread state and loop. */
export class Emt {
  #init: EmtInit;
  #shim: ShimLibrary["symbols"];
  #post: (m: EmtMessage) => void;
  #vcpu: VcpuFd;
  #runPtr: Deno.PointerObject;
  #run: DataView;
  #runBytes: Uint8Array;
  #self: Deno.PointerObject;
  #peers: Deno.PointerObject[];
  #mail: Mailboxes;
  #lapic: LocalApic;
  #uart: Uart16550;
  #debugExit: DebugExit;
  #pic = new LegacyPic();
  #echo: EchoDoorbell | null = null;
  #waitingForSipi: boolean;
  #halted = false;
  #haltedIf = true;
  /** An interrupt was queued with KVM_INTERRUPT and has not been through KVM_RUN yet. */
  #injectQueued = false;
  #unhandledLogged = 0;
  #stopping = false;
  /** The scheduler's record of this vCPU, when slots are enforced. */
  #sched: GrantRecordEmt | null = null;
  /** The grant held, or null. */
  #grant: Grant | null = null;
  /** ns-in-guest counter when the grant was taken. */
  #grantGuestNs0 = 0;
  /** A `runnable` event is posted and not answered by a grant yet. */
  #runnablePosted = false;
  #nsGuest: BigUint64Array;
  /** How this thread runs while it waits for a grant and while it holds one. */
  #waitPolicy: WaitPolicy | null = null;
  /** Halt polling before the futex sleep, ns (0 for a real-time waiter). */
  #haltPollNs: number;
  /** Without a scheduler: the end of the current run slice (`EmtInit.runSliceNs`), or 0. */
  #runSliceEnd = 0;
  /** Shim blocks of EMTs this one handed a slot to, by address. */
  #handOffPeers = new Map<number, Deno.PointerObject>();
  /** What ended the last halt (WAKE_SOURCE), reported with the next `runnable`. */
  #wakeSource: number = WAKE_SOURCE.start;

  /**
   * @param init the start message from the main thread
   * @param shim the opened shim
   * @param post sends a message to the main thread
   */
  constructor(init: EmtInit, shim: ShimLibrary, post: (m: EmtMessage) => void) {
    this.#init = init;
    this.#shim = shim.symbols;
    this.#post = post;
    this.#vcpu = new VcpuFd(init.vcpuFd, init.vcpu);
    this.#runPtr = this.#vcpu.mapRun(init.runMmapSize);
    const runBuf = Deno.UnsafePointerView.getArrayBuffer(this.#runPtr, init.runMmapSize);
    this.#run = new DataView(runBuf);
    this.#runBytes = new Uint8Array(runBuf);
    const base = Deno.UnsafePointer.of(init.emtBlocks)!;
    this.#peers = Array.from(
      { length: init.vcpus },
      (_, i) => Deno.UnsafePointer.offset(base, i * EMT_BLOCK_SIZE)!,
    );
    this.#self = this.#peers[init.vcpu];
    const global = Deno.UnsafePointer.of(init.globalBlock);
    const r = this.#shim.shim_attach(this.#self, global, init.vcpuFd, this.#runPtr);
    if (r < 0) throw new Error(`shim_attach failed: errno ${-r}`);
    this.#mail = new Mailboxes(init.mailboxes, init.vcpus);
    this.#lapic = new LocalApic(init.vcpu, {
      now: () => this.#shim.shim_now_f64(),
      sendIpi: (ipi) => this.#sendIpi(ipi),
    });
    this.#uart = new Uart16550((line) =>
      this.#post({ type: "console", vcpu: init.vcpu, line, time: Date.now() })
    );
    this.#debugExit = new DebugExit((status) => this.#exitVm(status));
    this.#waitingForSipi = init.start.kind === "wait-for-sipi";
    this.#nsGuest = new BigUint64Array(
      init.emtBlocks,
      init.vcpu * EMT_BLOCK_SIZE + COUNTERS_OFFSET + 8 * COUNTER.nsGuest,
      1,
    );
    if (init.sched) {
      this.#sched = new GrantRecordEmt(
        init.sched.table,
        init.vcpu,
        init.sched.doorbell,
        init.sched.dispatch,
      );
      this.#waitPolicy = WaitPolicy.forCallingThread(
        REALTIME_PRIORITY.waitingEmt,
        REALTIME_PRIORITY.reservedEmt,
      );
    }
    if (init.echo) this.#echo = new EchoDoorbell(init.echo);
    // Halt polling spins for a wake-up. A halted EMT under a scheduler is real-time (it gave its
    // grant back), and what wakes it (another vCPU's IPI, a device Worker) may be a lower
    // priority on its CPU: spinning would hold that very thread off (DESIGN.md invariant 7).
    // So a real-time waiter sleeps at once; polling stays for fair-class EMTs.
    this.#haltPollNs = this.#waitPolicy?.kind === "realtime" ? 0 : init.haltPollNs;
  }

  /** Runs the vCPU until the VM stops. Never throws: faults are reported and stop the VM. */
  run(): void {
    try {
      this.#loop();
    } catch (e) {
      this.#fault("EMT error", `${(e as Error).stack ?? e}`);
    }
    this.#uart.flush();
    if (this.#sched) this.#giveBack(SCHED_EVENT.gone);
    // The Worker's end is V8's and Deno's code, not ours: never real-time, never pinned.
    this.#waitPolicy?.release();
  }

  /** Releases the shim binding and the `kvm_run` mapping (the fd is closed by the owner). */
  close(): void {
    this.#shim.shim_detach(this.#self);
    munmap(this.#runPtr, this.#init.runMmapSize);
  }

  #loop(): void {
    const shim = this.#shim;
    const lapic = this.#lapic;
    const mail = this.#mail;
    const me = this.#init.vcpu;
    const self = this.#self;
    const run = this.#run;
    for (;;) {
      if (mail.stopRequested || this.#stopping) return;
      if (mail.hasPending(me)) this.#takeMail();
      if (mail.paused) {
        // Out of guest mode until resumed; under a scheduler the slot goes back (not runnable).
        if (this.#sched) this.#giveBack(SCHED_EVENT.halt);
        shim.shim_halt(self, 0, HALT_KIND.guest, 0);
        continue;
      }
      if (this.#waitingForSipi) {
        shim.shim_halt(self, 0, HALT_KIND.guest, 0);
        continue;
      }
      const timerDeadline = lapic.timerDeadline;
      if (timerDeadline !== 0 && shim.shim_now_f64() >= timerDeadline) {
        if (lapic.checkTimer(shim.shim_now_f64()) && this.#halted) {
          this.#wakeSource = WAKE_SOURCE.timer;
        }
      }
      if (this.#halted) {
        // HLT resumes only for an interrupt the CPU would take (IF set), INIT or stop.
        if (!this.#haltedIf || lapic.deliverable() < 0) {
          shim.shim_halt(
            self,
            this.#haltedIf ? lapic.timerDeadline : 0,
            HALT_KIND.guest,
            this.#haltPollNs,
          );
          continue;
        }
        this.#halted = false;
      }
      let deadline = lapic.timerDeadline;
      if (this.#sched) {
        const slice = this.#holdGrant();
        if (slice < 0) continue;
        if (deadline === 0 || slice < deadline) deadline = slice;
      } else if (this.#init.runSliceNs) {
        // A lone vCPU's slice end, without a scheduler: the floor of a hand-off.
        const now = shim.shim_now_f64();
        if (now >= this.#runSliceEnd) this.#runSliceEnd = now + this.#init.runSliceNs;
        if (deadline === 0 || this.#runSliceEnd < deadline) deadline = this.#runSliceEnd;
      }
      this.#injectInterrupt();
      const result = shim.shim_run(self, deadline);
      if (result === RUN_RESULT.poked || result === RUN_RESULT.deadline) continue;
      this.#injectQueued = false;
      switch (result) {
        case KVM_EXIT.IO:
          this.#handleIo();
          break;
        case KVM_EXIT.MMIO:
          this.#handleMmio();
          break;
        case KVM_EXIT.HLT:
          if (lapic.deliverable() < 0 || run.getUint8(KVM_RUN.if_flag) === 0) {
            this.#halted = true;
            this.#haltedIf = run.getUint8(KVM_RUN.if_flag) !== 0;
            if (this.#sched) this.#giveBack(SCHED_EVENT.halt);
          }
          break;
        case KVM_EXIT.IRQ_WINDOW_OPEN:
        case KVM_EXIT.INTR:
          break;
        case KVM_EXIT.SHUTDOWN:
          this.#fault("triple fault", "the guest triple-faulted (KVM_EXIT_SHUTDOWN)");
          return;
        case KVM_EXIT.INTERNAL_ERROR:
          this.#internalError();
          return;
        case KVM_EXIT.FAIL_ENTRY:
          this.#fault(
            "entry failure",
            `KVM_EXIT_FAIL_ENTRY, hardware reason 0x${
              run.getBigUint64(KVM_RUN.fail_entry_reason, true).toString(16)
            }`,
          );
          return;
        default:
          if (result < 0) {
            this.#fault("KVM_RUN failed", `KVM_RUN returned errno ${-result}`);
          } else {
            this.#fault("unexpected exit", `unexpected KVM exit ${exitReasonName(result)}`);
          }
          return;
      }
    }
  }

  /**
   * Makes sure this EMT holds a live grant. Returns its slice deadline, or -1 when it has none
   * (it then waited for one, or gave one back, and the loop goes round again).
   */
  #holdGrant(): number {
    const sched = this.#sched!;
    const shim = this.#shim;
    if (this.#grant === null) {
      if (!this.#runnablePosted) {
        sched.rejoin();
        sched.post(SCHED_EVENT.runnable, this.#wakeSource, shim.shim_now_f64());
        this.#wakeSource = WAKE_SOURCE.unknown;
        this.#runnablePosted = true;
      }
      const g = sched.takeGrant();
      if (g === null) {
        shim.shim_halt(this.#self, 0, HALT_KIND.grant, 0);
        return -1;
      }
      this.#grant = g;
      this.#runnablePosted = false;
      this.#grantGuestNs0 = Number(this.#nsGuest[0]);
      sched.startSteal(g.generation, shim.shim_now_f64(), shim.shim_thread_cpu_ns());
      // The core moved this thread to the slot's CPU before waking it (shim_wake_on). Reserved
      // time is held real-time, against the host's fair-class threads (host_threads.ts).
      this.#waitPolicy?.holding(g.reserved === true);
    }
    const g = this.#grant;
    if (sched.revoked(g.generation)) {
      this.#giveBack(SCHED_EVENT.preempted);
      return -1;
    }
    // Read afresh: the core may have extended the slice while the vCPU ran.
    const deadline = sched.deadline();
    if (shim.shim_now_f64() >= deadline) {
      this.#giveBack(SCHED_EVENT.sliceEnd);
      return -1;
    }
    return deadline;
  }

  /**
   * Gives the grant back (if one is held) reporting `type` and the guest ns it used. If the
   * plugin chose the slot's next vCPU ahead (`queueNext`), this EMT hands the slot over itself:
   * it reports its leave, takes the queued choice from the slot's hand-off word, wakes the
   * chosen EMT on the slot's CPU (`dispatch_table.ts`), and does not ring the core's doorbell:
   * the core reads the leave later (see below).
   */
  #giveBack(type: SchedEventType): void {
    const sched = this.#sched!;
    const shim = this.#shim;
    const now = shim.shim_now_f64();
    if (this.#grant !== null) {
      // Before posting: the core's wake-up must not preempt this thread short of its wait.
      this.#waitPolicy?.waiting();
      const ran = Number(this.#nsGuest[0]) - this.#grantGuestNs0;
      // The EMT never sleeps while it holds a grant, so wall time it did not spend on a CPU was
      // taken by other threads (V8's helpers, the host): the plugin does not charge it.
      const stolen = sched.stolenSince(now, shim.shim_thread_cpu_ns());
      const g = this.#grant;
      this.#grant = null;
      // The leave is in the ring before the hand-off, so that a core that finds the choice
      // taken also finds the leave that took it.
      sched.post(type, ran, now, g.generation, stolen, false);
      const to = sched.handOff(g.slot, g.generation, now);
      if (to !== null) shim.shim_wake_on(this.#peerAt(to.emtAddress), to.cpu);
      // A hand-off made needs nothing from the core now: it reads the leave at its next wake-up
      // (at the latest just after this slice's deadline), instead of taking the slot's CPU from
      // the vCPU about to enter. A preemption's acknowledgement rings: a waker waits for it.
      if (to === null || type === SCHED_EVENT.preempted) sched.ring();
      // After a slice end, preemption or yield the core still counts the vCPU runnable: the
      // next grant comes without asking. After a halt or leaving, it must ask again.
      this.#runnablePosted = type === SCHED_EVENT.sliceEnd || type === SCHED_EVENT.preempted ||
        type === SCHED_EVENT.yield;
    } else if (type === SCHED_EVENT.gone || type === SCHED_EVENT.halt) {
      // Halting (or leaving) while waiting for a grant: withdraw the runnable request, and any
      // choice queued for this vCPU. One handed over already goes straight back.
      const handed = sched.withdraw();
      if (handed !== 0) sched.post(type, 0, now, handed);
      else if (this.#runnablePosted || type === SCHED_EVENT.gone) sched.post(type, 0, now);
      this.#runnablePosted = false;
    }
  }

  /** The shim block at `address` (another EMT's, possibly of another VM), cached. */
  #peerAt(address: number): Deno.PointerObject {
    let p = this.#handOffPeers.get(address);
    if (!p) {
      p = Deno.UnsafePointer.create(BigInt(address))!;
      this.#handOffPeers.set(address, p);
    }
    return p;
  }

  #takeMail(): void {
    const d = this.#mail.drain(this.#init.vcpu);
    if (d.init) {
      // INIT: the APIC and the processor reset, and it waits for a SIPI (SDM 8.4.1, 9.1.1).
      // The processor's state must go too: a SIPI only sets CS:IP, and a vCPU INITed from long
      // mode would start its trampoline with paging, long mode and its old descriptor tables.
      this.#lapic.reset();
      setInitState(this.#vcpu);
      if (this.#sched) this.#giveBack(SCHED_EVENT.halt);
      this.#waitingForSipi = true;
      this.#halted = false;
      this.#injectQueued = false;
    }
    if (d.sipi >= 0 && this.#waitingForSipi) {
      setSipiState(this.#vcpu, d.sipi);
      this.#waitingForSipi = false;
    }
    if (d.vectors.length && this.#halted) {
      this.#wakeSource = d.fromHost ? WAKE_SOURCE.device : WAKE_SOURCE.ipi;
    }
    for (const v of d.vectors) this.#lapic.acceptFixed(v);
  }

  #injectInterrupt(): void {
    const v = this.#lapic.deliverable();
    const run = this.#run;
    if (v < 0 || this.#injectQueued) {
      run.setUint8(KVM_RUN.request_interrupt_window, 0);
      return;
    }
    if (run.getUint8(KVM_RUN.ready_for_interrupt_injection) && run.getUint8(KVM_RUN.if_flag)) {
      this.#vcpu.interrupt(v);
      this.#lapic.acknowledge(v);
      this.#injectQueued = true;
      run.setUint8(KVM_RUN.request_interrupt_window, 0);
    } else {
      run.setUint8(KVM_RUN.request_interrupt_window, 1);
    }
  }

  #handleIo(): void {
    const run = this.#run;
    const out = run.getUint8(KVM_RUN.io_direction) === KVM_EXIT_IO_OUT;
    const size = run.getUint8(KVM_RUN.io_size);
    const port = run.getUint16(KVM_RUN.io_port, true);
    const count = run.getUint32(KVM_RUN.io_count, true);
    let off = Number(run.getBigUint64(KVM_RUN.io_data_offset, true));
    for (let i = 0; i < count; i++, off += size) {
      if (out) {
        const value = size === 1
          ? run.getUint8(off)
          : size === 2
          ? run.getUint16(off, true)
          : run.getUint32(off, true);
        this.#portOut(port, size, value);
      } else {
        const value = this.#portIn(port, size);
        if (size === 1) run.setUint8(off, value);
        else if (size === 2) run.setUint16(off, value, true);
        else run.setUint32(off, value, true);
      }
    }
  }

  #portOut(port: number, size: number, value: number): void {
    if (port === BENCH_PORT) return;
    if (port === YIELD_PORT) return this.#yield();
    if (port >= COM1_BASE && port < COM1_BASE + 8) {
      this.#uart.write(port - COM1_BASE, value & 0xff);
    } else if (port >= DEBUG_EXIT_PORT && port < DEBUG_EXIT_PORT + DEBUG_EXIT_SIZE) {
      this.#debugExit.write(value);
    } else if (LegacyPic.decodes(port) && size === 1) {
      this.#pic.write(port, value);
    } else {
      this.#unhandled(
        `port write 0x${port.toString(16)} size ${size} value 0x${value.toString(16)}`,
      );
    }
  }

  /** sys_yield: under a scheduler the grant goes back; without one the host decides. */
  #yield(): void {
    if (this.#sched && this.#grant) this.#giveBack(SCHED_EVENT.yield);
  }

  #portIn(port: number, size: number): number {
    if (port >= COM1_BASE && port < COM1_BASE + 8) return this.#uart.read(port - COM1_BASE);
    if (LegacyPic.decodes(port) && size === 1) return this.#pic.read(port);
    this.#unhandled(`port read 0x${port.toString(16)} size ${size}`);
    return size === 1 ? 0xff : size === 2 ? 0xffff : 0xffffffff; // floating bus
  }

  #handleMmio(): void {
    const run = this.#run;
    const addr = Number(run.getBigUint64(KVM_RUN.mmio_phys_addr, true));
    const len = run.getUint32(KVM_RUN.mmio_len, true);
    const write = run.getUint8(KVM_RUN.mmio_is_write) !== 0;
    if (addr === ECHO_DOORBELL && write && len === 4 && this.#echo) {
      this.#echo.ring(run.getUint32(KVM_RUN.mmio_data, true), this.#shim.shim_now_f64());
      return;
    }
    if (addr >= BENCH_MMIO && addr < BENCH_MMIO + 0x1000) {
      if (!write) this.#runBytes.fill(0, KVM_RUN.mmio_data, KVM_RUN.mmio_data + 8);
      return;
    }
    // A register access is 32 bits on a 16-byte boundary (SDM 11.4.1); anything else in the
    // page is an access nobody emulates.
    if (addr >= LAPIC_BASE && addr < LAPIC_BASE + LAPIC_SIZE && len === 4 && (addr & 0xf) === 0) {
      const offset = addr - LAPIC_BASE;
      if (write) {
        this.#lapic.write(offset, run.getUint32(KVM_RUN.mmio_data, true));
        if ((offset & 0xff0) === 0xd0) this.#mail.publishLdr(this.#init.vcpu, this.#lapic.ldr);
      } else {
        run.setUint32(KVM_RUN.mmio_data, this.#lapic.read(offset), true);
      }
      return;
    }
    let detail = `MMIO ${write ? "write" : "read"} 0x${addr.toString(16)} size ${len}`;
    if (write) {
      const bytes = Array.from(this.#runBytes.subarray(KVM_RUN.mmio_data, KVM_RUN.mmio_data + len));
      detail += ` data ${bytes.map((b) => b.toString(16).padStart(2, "0")).join("")}`;
    } else {
      this.#runBytes.fill(0xff, KVM_RUN.mmio_data, KVM_RUN.mmio_data + 8);
    }
    this.#unhandled(detail);
  }

  #unhandled(what: string): void {
    if (this.#init.unhandled === "stop") {
      this.#fault("unhandled access", `unhandled ${what}`);
      return;
    }
    this.#logLimited(`unhandled ${what}`);
  }

  /**
   * Logs what the guest did that is ignored, with the rip, up to {@linkcode UNHANDLED_LOG_LIMIT}
   * lines per vCPU: a guest repeating it must not flood the main thread with messages.
   */
  #logLimited(what: string): void {
    if (this.#unhandledLogged < UNHANDLED_LOG_LIMIT) {
      this.#unhandledLogged++;
      this.#post({
        type: "log",
        vcpu: this.#init.vcpu,
        message: `vm ${this.#init.vmName} vcpu ${this.#init.vcpu}: ${what} at rip ` +
          `${this.#rip()} (ignored${
            this.#unhandledLogged === UNHANDLED_LOG_LIMIT ? "; further ones not logged" : ""
          })`,
      });
    }
  }

  #sendIpi(ipi: Ipi): void {
    const me = this.#init.vcpu;
    const n = this.#init.vcpus;
    let targets: number[];
    if (ipi.shorthand === 1) targets = [me];
    else if (ipi.shorthand === 2) targets = Array.from({ length: n }, (_, i) => i);
    else if (ipi.shorthand === 3) {
      targets = Array.from({ length: n }, (_, i) => i).filter((i) => i !== me);
    } else if (ipi.logical) {
      targets = [];
      for (let i = 0; i < n; i++) if ((this.#mail.ldr(i) >>> 24) & ipi.destination) targets.push(i);
    } else if (ipi.destination === 0xff) targets = Array.from({ length: n }, (_, i) => i);
    else targets = ipi.destination < n ? [ipi.destination] : [];
    if (ipi.mode === DELIVERY.LOWEST) targets = targets.slice(0, 1);
    for (const t of targets) {
      switch (ipi.mode) {
        case DELIVERY.FIXED:
        case DELIVERY.LOWEST:
          if (t === me) {
            this.#lapic.acceptFixed(ipi.vector);
            continue;
          }
          this.#mail.postFixed(t, ipi.vector);
          break;
        case DELIVERY.INIT:
          if (t === me) continue; // a self-INIT would reset the sender mid-instruction; ignored
          this.#mail.postInit(t);
          break;
        case DELIVERY.SIPI:
          if (t === me) continue;
          this.#mail.postSipi(t, ipi.vector);
          break;
        default:
          this.#logLimited(`IPI delivery mode ${ipi.mode} is not emulated`);
          continue;
      }
      this.#shim.shim_wake(this.#peers[t]);
      this.#shim.shim_poke(this.#peers[t]);
    }
  }

  #exitVm(status: number): void {
    this.#post({ type: "exit", vcpu: this.#init.vcpu, status });
    this.#stopVm();
  }

  /** Stops every EMT of this VM (this one at the top of its loop). */
  #stopVm(): void {
    this.#stopping = true;
    this.#mail.requestStop();
    for (let i = 0; i < this.#peers.length; i++) {
      if (i === this.#init.vcpu) continue;
      this.#shim.shim_wake(this.#peers[i]);
      this.#shim.shim_poke(this.#peers[i]);
    }
  }

  #rip(): string {
    try {
      return `0x${this.#vcpu.getRegs().rip.toString(16)}`;
    } catch {
      return "unknown";
    }
  }

  #internalError(): void {
    const run = this.#run;
    const sub = run.getUint32(KVM_RUN.internal_suberror, true);
    const ndata = Math.min(16, run.getUint32(KVM_RUN.internal_ndata, true));
    const data = Array.from(
      { length: ndata },
      (_, i) => `0x${run.getBigUint64(KVM_RUN.internal_data + 8 * i, true).toString(16)}`,
    );
    const reason = sub === KVM_INTERNAL_ERROR.EMULATION
      ? "KVM emulation failure"
      : `KVM internal error (suberror ${sub})`;
    this.#fault(reason, `${reason}${data.length ? ` (data ${data.join(" ")})` : ""}`);
  }

  #fault(reason: string, detail: string): void {
    const rip = this.#rip();
    const fault: VcpuFault = {
      reason,
      rip,
      message:
        `vm ${this.#init.vmName} vcpu ${this.#init.vcpu}: ${reason} at rip ${rip}: ${detail}`,
    };
    this.#post({ type: "fault", vcpu: this.#init.vcpu, fault });
    this.#stopVm();
  }
}
