/**
 * The local APIC, xAPIC MMIO flavour at 0xFEE00000, emulated in user space (deno-vmm runs
 * without KVM's in-kernel irqchip so that every guest HLT reaches the scheduler).
 *
 * One instance per vCPU, owned by that vCPU's EMT. What other vCPUs do to it (IPIs, INIT,
 * SIPI) arrives through the VM's shared interrupt mailboxes (`src/emt/mailbox.ts`) and is
 * applied here with {@linkcode LocalApic.acceptFixed} and friends.
 *
 * Reference: Intel SDM Vol. 3A, chapter 11 ("Advanced Programmable Interrupt Controller"):
 * register offsets (table 11-1), the timer (11.5.4: divide configuration, one-shot and
 * periodic modes), interrupt priorities (11.8.3: PPR from TPR and the ISR), ICR (11.6.1).
 * The timer's input clock is 1 GHz before the divider, as in KVM's in-kernel LAPIC
 * (APIC_BUS_CYCLE_NS = 1), so the same guest sees the same timer under QEMU.
 *
 * @module
 */

/** Guest-physical base of the xAPIC page. */
export const LAPIC_BASE = 0xfee00000;
/** Size of the page. */
export const LAPIC_SIZE = 0x1000;

/** Register offsets (SDM table 11-1). */
export const REG = {
  ID: 0x20,
  VERSION: 0x30,
  TPR: 0x80,
  APR: 0x90,
  PPR: 0xa0,
  EOI: 0xb0,
  LDR: 0xd0,
  DFR: 0xe0,
  SVR: 0xf0,
  ISR0: 0x100,
  TMR0: 0x180,
  IRR0: 0x200,
  ESR: 0x280,
  ICR_LOW: 0x300,
  ICR_HIGH: 0x310,
  LVT_TIMER: 0x320,
  LVT_THERMAL: 0x330,
  LVT_PERF: 0x340,
  LVT_LINT0: 0x350,
  LVT_LINT1: 0x360,
  LVT_ERROR: 0x370,
  TIMER_INITIAL: 0x380,
  TIMER_CURRENT: 0x390,
  TIMER_DIVIDE: 0x3e0,
} as const;

/** Version register: version 0x14 (integrated APIC), 6 LVT entries. */
const VERSION_VALUE = 0x00050014;
const LVT_MASKED = 1 << 16;
const SVR_ENABLE = 1 << 8;
/** ESR bit 5: "send illegal vector"; bit 6: "received illegal vector". */
const ESR_SEND_ILLEGAL = 1 << 5;
const ESR_RECV_ILLEGAL = 1 << 6;
const TIMER_PERIODIC = 1 << 17;
/**
 * Shortest period of the periodic timer, ns. A shorter one is stretched to it, as KVM's in-kernel
 * LAPIC does (arch/x86/kvm/lapic.c, limit_periodic_timer_frequency, with its default
 * min_timer_period_us of 200): otherwise a guest that programs a period of a few ns keeps its EMT
 * busy firing the timer instead of running the guest (or, masked, halted in a spin).
 */
export const MIN_TIMER_PERIOD_NS = 200_000;

/** ICR delivery modes (SDM 11.6.1). */
export const DELIVERY = { FIXED: 0, LOWEST: 1, SMI: 2, NMI: 4, INIT: 5, SIPI: 6 } as const;

/** An interprocessor interrupt as written to the ICR. */
export interface Ipi {
  /** Vector (fixed) or start page (SIPI). */
  vector: number;
  /** Delivery mode, one of {@linkcode DELIVERY}. */
  mode: number;
  /** Logical (true) or physical destination. */
  logical: boolean;
  /** Destination field (ICR bits 63:56). */
  destination: number;
  /** Shorthand: 0 none, 1 self, 2 all including self, 3 all excluding self. */
  shorthand: number;
  /** Level bit (INIT de-assert has it clear). */
  level: boolean;
}

/** What the LAPIC needs from its EMT. */
export interface LapicHost {
  /** Current time, CLOCK_MONOTONIC ns. */
  now(): number;
  /** Send an IPI (the EMT routes it through the VM's mailboxes). */
  sendIpi(ipi: Ipi): void;
}

/** A 256-bit vector register (IRR, ISR). */
class VectorSet {
  readonly words = new Uint32Array(8);
  set(v: number): void {
    this.words[v >>> 5] |= 1 << (v & 31);
  }
  clear(v: number): void {
    this.words[v >>> 5] &= ~(1 << (v & 31));
  }
  /** Highest set vector, or -1. */
  highest(): number {
    for (let i = 7; i >= 0; i--) {
      const w = this.words[i];
      if (w !== 0) return i * 32 + 31 - Math.clz32(w);
    }
    return -1;
  }
}

/** One vCPU's local APIC. */
export class LocalApic {
  /** APIC id (= vCPU index). */
  readonly id: number;
  #host: LapicHost;
  #irr = new VectorSet();
  #isr = new VectorSet();
  #tpr = 0;
  #ldr = 0;
  #dfr = 0xffffffff;
  #svr = 0xff;
  #esr = 0;
  #esrPending = 0;
  #icrLow = 0;
  #icrHigh = 0;
  #lvt = new Uint32Array(6).fill(LVT_MASKED); // timer, thermal, perf, lint0, lint1, error
  #divideConfig = 0;
  #initialCount = 0;
  /** Absolute ns of the next timer expiry, 0 when the timer is stopped. */
  #deadline = 0;
  /** Period in ns of the running timer (one-shot: 0 after expiry). */
  #periodNs = 0;
  /** Timer interrupts raised (for tests and stats). */
  timerFires = 0;

  /**
   * @param id the APIC id
   * @param host the EMT-side callbacks
   */
  constructor(id: number, host: LapicHost) {
    this.id = id;
    this.#host = host;
  }

  /** Whether the APIC is software-enabled (SVR bit 8). */
  get enabled(): boolean {
    return (this.#svr & SVR_ENABLE) !== 0;
  }

  /** Logical destination register (published for logical-mode IPIs). */
  get ldr(): number {
    return this.#ldr;
  }

  /** Next timer expiry, absolute ns (0: none). */
  get timerDeadline(): number {
    return this.#deadline;
  }

  /** Divider from the divide configuration register (SDM figure 11-10). */
  get divisor(): number {
    const v = (this.#divideConfig & 3) | ((this.#divideConfig & 8) >> 1);
    return v === 7 ? 1 : 2 << v;
  }

  /** Resets to the power-up state (INIT), keeping the id (SDM 11.4.7.3). */
  reset(): void {
    this.#irr = new VectorSet();
    this.#isr = new VectorSet();
    this.#tpr = 0;
    this.#ldr = 0;
    this.#dfr = 0xffffffff;
    this.#svr = 0xff;
    this.#esr = 0;
    this.#esrPending = 0;
    this.#lvt.fill(LVT_MASKED);
    this.#divideConfig = 0;
    this.#initialCount = 0;
    this.#deadline = 0;
    this.#periodNs = 0;
  }

  /**
   * Reads a 32-bit register at `offset` in the APIC page. Registers sit on 16-byte boundaries;
   * a read anywhere else reads reserved bytes: 0.
   */
  read(offset: number): number {
    if (offset & 0xf) return 0;
    const reg = offset & 0xff0;
    switch (reg) {
      case REG.ID:
        return (this.id << 24) >>> 0;
      case REG.VERSION:
        return VERSION_VALUE;
      case REG.TPR:
        return this.#tpr;
      case REG.APR:
        return 0;
      case REG.PPR:
        return this.#ppr();
      case REG.LDR:
        return this.#ldr;
      case REG.DFR:
        return this.#dfr;
      case REG.SVR:
        return this.#svr;
      case REG.ESR:
        return this.#esr;
      case REG.ICR_LOW:
        return this.#icrLow & ~(1 << 12); // delivery status: always idle
      case REG.ICR_HIGH:
        return this.#icrHigh;
      case REG.TIMER_INITIAL:
        return this.#initialCount;
      case REG.TIMER_CURRENT:
        return this.#currentCount();
      case REG.TIMER_DIVIDE:
        return this.#divideConfig;
    }
    if (reg >= REG.LVT_TIMER && reg <= REG.LVT_ERROR) {
      return this.#lvt[(reg - REG.LVT_TIMER) >> 4];
    }
    if (reg >= REG.ISR0 && reg < REG.ISR0 + 0x80) return this.#isr.words[(reg - REG.ISR0) >> 4];
    if (reg >= REG.TMR0 && reg < REG.TMR0 + 0x80) return 0;
    if (reg >= REG.IRR0 && reg < REG.IRR0 + 0x80) return this.#irr.words[(reg - REG.IRR0) >> 4];
    return 0;
  }

  /**
   * Writes a 32-bit register at `offset` in the APIC page. A write that is not on a register's
   * 16-byte boundary is ignored, as KVM's in-kernel LAPIC does (apic_mmio_write; SDM 11.4.1:
   * registers are 128-bit aligned and accessed as 32 bits): it must not reach the register whose
   * slot it falls in (a store to ICR + 4 would send an IPI).
   */
  write(offset: number, value: number): void {
    if (offset & 0xf) return;
    const reg = offset & 0xff0;
    value >>>= 0;
    switch (reg) {
      case REG.TPR:
        this.#tpr = value & 0xff;
        return;
      case REG.EOI:
        this.eoi();
        return;
      case REG.LDR:
        this.#ldr = value & 0xff000000;
        return;
      case REG.DFR:
        this.#dfr = value | 0x0fffffff;
        return;
      case REG.SVR:
        this.#svr = value & 0x3ff;
        if (!this.enabled) {
          // SDM 11.4.7.2: a software disable masks every LVT entry.
          for (let i = 0; i < this.#lvt.length; i++) this.#lvt[i] |= LVT_MASKED;
        }
        return;
      case REG.ESR:
        // Writing ESR latches the errors collected since the last write (SDM 11.5.3).
        this.#esr = this.#esrPending;
        this.#esrPending = 0;
        return;
      case REG.ICR_HIGH:
        this.#icrHigh = value & 0xff000000;
        return;
      case REG.ICR_LOW:
        this.#icrLow = value;
        this.#sendFromIcr();
        return;
      case REG.TIMER_INITIAL:
        this.#initialCount = value;
        this.#startTimer();
        return;
      case REG.TIMER_DIVIDE:
        this.#divideConfig = value & 0xb;
        return;
    }
    if (reg >= REG.LVT_TIMER && reg <= REG.LVT_ERROR) {
      let v = value;
      if (!this.enabled) v |= LVT_MASKED;
      this.#lvt[(reg - REG.LVT_TIMER) >> 4] = v;
      if (reg === REG.LVT_TIMER && this.#deadline !== 0) {
        this.#periodNs = (v & TIMER_PERIODIC) ? this.#period(this.#initialCount * this.divisor) : 0;
      }
    }
    // Read-only and reserved registers ignore writes.
  }

  /** EOI: retire the highest-priority in-service vector. */
  eoi(): void {
    const v = this.#isr.highest();
    if (v >= 0) this.#isr.clear(v);
  }

  /** A fixed interrupt arrived (from an IPI, a device or this APIC's own timer). */
  acceptFixed(vector: number): void {
    if (vector < 16) {
      this.#esrPending |= ESR_RECV_ILLEGAL;
      return;
    }
    this.#irr.set(vector);
  }

  /** Fires the timer if its deadline has passed; returns true when it raised an interrupt. */
  checkTimer(now: number): boolean {
    if (this.#deadline === 0 || now < this.#deadline) return false;
    const lvt = this.#lvt[0];
    if (this.#periodNs > 0) {
      // Periodic: the next expiry stays on the original grid (missed periods coalesce).
      const behind = Math.floor((now - this.#deadline) / this.#periodNs) + 1;
      this.#deadline += behind * this.#periodNs;
    } else {
      this.#deadline = 0;
    }
    if (lvt & LVT_MASKED) return false;
    this.timerFires++;
    this.acceptFixed(lvt & 0xff);
    return true;
  }

  /** The vector to inject now, or -1 (SDM 11.8.3: above the processor priority). */
  deliverable(): number {
    if (!this.enabled) return -1;
    const v = this.#irr.highest();
    if (v < 0) return -1;
    return (v >> 4) > (this.#ppr() >> 4) ? v : -1;
  }

  /** Whether any interrupt is requested at all (IRR non-empty), deliverable or not. */
  hasRequest(): boolean {
    return this.#irr.highest() >= 0;
  }

  /** The vector was injected: move it from IRR to ISR. */
  acknowledge(vector: number): void {
    this.#irr.clear(vector);
    this.#isr.set(vector);
  }

  #ppr(): number {
    const isrv = this.#isr.highest();
    const isrClass = isrv < 0 ? 0 : isrv & 0xf0;
    return (this.#tpr & 0xf0) >= isrClass ? this.#tpr : isrClass;
  }

  #currentCount(): number {
    if (this.#deadline === 0) return 0;
    const left = this.#deadline - this.#host.now();
    return left <= 0 ? 0 : Math.min(0xffffffff, Math.ceil(left / this.divisor));
  }

  #startTimer(): void {
    if (this.#initialCount === 0) {
      this.#deadline = 0;
      this.#periodNs = 0;
      return;
    }
    const ns = this.#initialCount * this.divisor;
    const periodic = (this.#lvt[0] & TIMER_PERIODIC) !== 0;
    this.#deadline = this.#host.now() + (periodic ? this.#period(ns) : ns);
    this.#periodNs = periodic ? this.#period(ns) : 0;
  }

  /** A periodic timer's period: at least {@linkcode MIN_TIMER_PERIOD_NS}. */
  #period(ns: number): number {
    return Math.max(ns, MIN_TIMER_PERIOD_NS);
  }

  #sendFromIcr(): void {
    const low = this.#icrLow;
    const ipi: Ipi = {
      vector: low & 0xff,
      mode: (low >> 8) & 7,
      logical: (low & (1 << 11)) !== 0,
      destination: this.#icrHigh >>> 24,
      shorthand: (low >> 18) & 3,
      level: (low & (1 << 14)) !== 0,
    };
    if (ipi.mode === DELIVERY.INIT && !ipi.level) return; // INIT level de-assert: no-op
    if ((ipi.mode === DELIVERY.FIXED || ipi.mode === DELIVERY.LOWEST) && ipi.vector < 16) {
      this.#esrPending |= ESR_SEND_ILLEGAL;
      return;
    }
    this.#host.sendIpi(ipi);
  }
}
