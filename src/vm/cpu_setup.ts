/**
 * Architectural vCPU state for the ways our vCPUs start: the PVH 32-bit entry (the boot
 * vCPU) and a startup IPI (application processors, as on real hardware), plus each vCPU's
 * CPUID table.
 *
 * References: the PVH boot protocol (Xen docs/misc/pvh.pandoc: "32bit protected mode, paging
 * disabled, CS flat 4 GiB execute/read, DS/ES/SS flat read/write, TR a 32-bit TSS, EBX the
 * physical address of hvm_start_info"); Intel SDM Vol. 3A 9.1.1 (processor state after INIT)
 * and 8.4.4 (SIPI: CS = vector << 8, IP = 0, real mode).
 *
 * @module
 */
import type { CpuidEntry, Regs, Segment, Sregs, VcpuFd } from "../kvm/kvm.ts";

function zeroRegs(): Regs {
  return {
    rax: 0n,
    rbx: 0n,
    rcx: 0n,
    rdx: 0n,
    rsi: 0n,
    rdi: 0n,
    rsp: 0n,
    rbp: 0n,
    r8: 0n,
    r9: 0n,
    r10: 0n,
    r11: 0n,
    r12: 0n,
    r13: 0n,
    r14: 0n,
    r15: 0n,
    rip: 0n,
    rflags: 2n, // bit 1 is reserved and always set
  };
}

function flatSegment(selector: number, type: number): Segment {
  return {
    base: 0n,
    limit: 0xffffffff,
    selector,
    type,
    present: 1,
    dpl: 0,
    db: 1,
    s: 1,
    l: 0,
    g: 1,
    avl: 0,
    unusable: 0,
  };
}

/** Puts `vcpu` at the PVH 32-bit entry `entry` with EBX = `startInfo`. */
export function setPvhEntryState(vcpu: VcpuFd, entry: number, startInfo: number): void {
  const s: Sregs = vcpu.getSregs();
  const code = flatSegment(0x10, 0xb); // execute/read, accessed
  const data = flatSegment(0x18, 0x3); // read/write, accessed
  s.cs = code;
  s.ds =
    s.es =
    s.fs =
    s.gs =
    s.ss =
      data;
  s.tr = { ...flatSegment(0x20, 0xb), limit: 0x67, s: 0, db: 0, g: 0 }; // busy 32-bit TSS
  s.cr0 = 0x11n; // PE | ET
  s.cr4 = 0n;
  s.efer = 0n;
  vcpu.setSregs(s);
  const r = zeroRegs();
  r.rip = BigInt(entry);
  r.rbx = BigInt(startInfo);
  vcpu.setRegs(r);
}

/**
 * Puts `vcpu` in the state INIT leaves a processor in (SDM Vol. 3A 9.1.1, table 9-1): real
 * mode, paging and long mode off, CS:IP F000:FFF0 with CS base 0xFFFF0000, 64 KiB data segments
 * at 0, GDTR and IDTR base 0 limit 0xFFFF, the general registers 0 (RFLAGS 2). It waits there for
 * a SIPI ({@linkcode setSipiState}). An interrupt KVM had queued is dropped with the rest
 * (setSregs writes an empty pending bitmap). The APIC base MSR is kept: INIT does not change it.
 */
export function setInitState(vcpu: VcpuFd): void {
  const s: Sregs = vcpu.getSregs();
  const real = (type: number, s: number): Segment => ({
    base: 0n,
    limit: 0xffff,
    selector: 0,
    type,
    present: 1,
    dpl: 0,
    db: 0,
    s,
    l: 0,
    g: 0,
    avl: 0,
    unusable: 0,
  });
  s.cs = { ...real(0xb, 1), selector: 0xf000, base: 0xffff0000n };
  s.ds =
    s.es =
    s.fs =
    s.gs =
    s.ss =
      real(0x3, 1);
  s.ldt = real(0x2, 0);
  s.tr = real(0xb, 0);
  s.gdt = { base: 0n, limit: 0xffff };
  s.idt = { base: 0n, limit: 0xffff };
  s.cr0 = 0x60000010n; // CD | NW | ET
  s.cr2 = 0n;
  s.cr3 = 0n;
  s.cr4 = 0n;
  s.cr8 = 0n;
  s.efer = 0n;
  vcpu.setSregs(s);
  const r = zeroRegs();
  r.rip = 0xfff0n;
  vcpu.setRegs(r);
}

/** Starts an application processor at real-mode `vector << 12` after a SIPI. */
export function setSipiState(vcpu: VcpuFd, vector: number): void {
  const s = vcpu.getSregs();
  s.cs = {
    ...s.cs,
    selector: vector << 8,
    base: BigInt(vector << 12),
    limit: 0xffff,
    type: 0xb,
    present: 1,
    dpl: 0,
    db: 0,
    s: 1,
    l: 0,
    g: 0,
    unusable: 0,
  };
  vcpu.setSregs(s);
  const r = zeroRegs();
  r.rip = 0n;
  vcpu.setRegs(r);
}

// CPUID bits adjusted (Intel SDM Vol. 2A, CPUID leaf 1 and leaf 0xB).
const LEAF1_ECX_X2APIC = 1 << 21;
const LEAF1_ECX_TSC_DEADLINE = 1 << 24;

/**
 * The CPUID table for vCPU `apicId`: what KVM supports, with this vCPU's APIC id in leaf 1
 * and the x2APIC leaves, and without x2APIC and the TSC-deadline timer (deno-vmm emulates
 * an xAPIC with the one-shot and periodic timer modes).
 */
export function cpuidFor(supported: CpuidEntry[], apicId: number): CpuidEntry[] {
  return supported.map((e) => {
    const c = { ...e };
    if (c.function === 1) {
      c.ebx = (c.ebx & 0x00ffffff) | (apicId << 24);
      c.ecx &= ~(LEAF1_ECX_X2APIC | LEAF1_ECX_TSC_DEADLINE);
    } else if (c.function === 0xb || c.function === 0x1f) {
      c.edx = apicId;
    }
    return c;
  });
}
