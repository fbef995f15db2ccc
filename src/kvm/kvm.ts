/**
 * Typed bindings for the KVM API deno-vmm uses: the system fd (`/dev/kvm`), VM fds and
 * vCPU fds. Thin: each method is one ioctl with its struct encoded or decoded. `KVM_RUN`
 * itself goes through the shim (`ffi/shim.c`), which adds deadlines and pokes.
 *
 * Reference: the KVM API documentation, Documentation/virt/kvm/api.rst.
 *
 * @module
 */
import { KVM, KVM_API_VERSION, KVM_CAP } from "./constants.ts";
import {
  KVM_CPUID2,
  KVM_CPUID_ENTRY2,
  KVM_DTABLE,
  KVM_REGS_FIELDS,
  KVM_REGS_SIZE,
  KVM_SEGMENT,
  KVM_SREGS,
  KVM_USERSPACE_MEMORY_REGION,
} from "./structs.ts";
import { closeFd, errno, getLibc, mmap, openRdwr, SyscallError } from "./libc.ts";

/** The general registers (`struct kvm_regs`). */
export type Regs = Record<typeof KVM_REGS_FIELDS[number], bigint>;

/** A segment register (`struct kvm_segment`). */
export interface Segment {
  /** Base address. */
  base: bigint;
  /** Limit (bytes - 1, or pages - 1 when `g`). */
  limit: number;
  /** Selector. */
  selector: number;
  /** Type field (4 bits). */
  type: number;
  /** Present. */
  present: number;
  /** Descriptor privilege level. */
  dpl: number;
  /** Default operand size (32-bit). */
  db: number;
  /** Code/data (1) or system (0). */
  s: number;
  /** 64-bit code. */
  l: number;
  /** Granularity (4 KiB). */
  g: number;
  /** Available bit. */
  avl: number;
  /** Unusable (null) segment. */
  unusable: number;
}

/** A descriptor table register (`struct kvm_dtable`). */
export interface DescriptorTable {
  /** Base address. */
  base: bigint;
  /** Limit. */
  limit: number;
}

/** The special registers (`struct kvm_sregs`), without the interrupt bitmap. */
export interface Sregs {
  /** Segment registers. */
  cs: Segment;
  /** DS. */
  ds: Segment;
  /** ES. */
  es: Segment;
  /** FS. */
  fs: Segment;
  /** GS. */
  gs: Segment;
  /** SS. */
  ss: Segment;
  /** Task register. */
  tr: Segment;
  /** LDT register. */
  ldt: Segment;
  /** GDTR. */
  gdt: DescriptorTable;
  /** IDTR. */
  idt: DescriptorTable;
  /** Control registers, EFER and the APIC base MSR. */
  cr0: bigint;
  /** CR2. */
  cr2: bigint;
  /** CR3. */
  cr3: bigint;
  /** CR4. */
  cr4: bigint;
  /** CR8. */
  cr8: bigint;
  /** EFER. */
  efer: bigint;
  /** IA32_APIC_BASE. */
  apic_base: bigint;
}

/** One CPUID leaf (`struct kvm_cpuid_entry2`). */
export interface CpuidEntry {
  /** Leaf (EAX input). */
  function: number;
  /** Sub-leaf (ECX input). */
  index: number;
  /** KVM_CPUID_FLAG_*. */
  flags: number;
  /** Output registers. */
  eax: number;
  /** EBX. */
  ebx: number;
  /** ECX. */
  ecx: number;
  /** EDX. */
  edx: number;
}

function ioctlPtr(fd: number, req: bigint, buf: Uint8Array | null, name: string): number {
  const r = getLibc().ioctl_ptr(fd, req, buf);
  if (r < 0) throw new SyscallError(`ioctl(${name})`, errno());
  return r;
}

function ioctlVal(fd: number, req: bigint, value: bigint | number, name: string): number {
  const r = getLibc().ioctl_val(fd, req, BigInt(value));
  if (r < 0) throw new SyscallError(`ioctl(${name})`, errno());
  return r;
}

/** Raised when KVM is missing or unusable; the message says what to enable. */
export class KvmUnavailableError extends Error {
  /**
   * Creates the error.
   * @param message what is wrong and what to do
   */
  constructor(message: string) {
    super(message);
    this.name = "KvmUnavailableError";
  }
}

/** The KVM system fd (`/dev/kvm`). */
export class Kvm {
  /** The file descriptor. */
  readonly fd: number;
  /** Size of each vCPU's `kvm_run` mapping. */
  readonly vcpuMmapSize: number;

  private constructor(fd: number) {
    this.fd = fd;
    this.vcpuMmapSize = ioctlVal(fd, KVM.GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE");
  }

  /**
   * Opens `/dev/kvm` and checks the API version and the capabilities deno-vmm relies on.
   * Throws {@linkcode KvmUnavailableError} naming the fix when it cannot.
   */
  static open(path = "/dev/kvm"): Kvm {
    let fd: number;
    try {
      fd = openRdwr(path);
    } catch (e) {
      const code = e instanceof SyscallError ? e.errno : 0;
      const why = code === 2
        ? `${path} does not exist: enable KVM (load kvm_intel or kvm_amd, or run on a ` +
          `host with nested virtualisation)`
        : code === 13 || code === 1
        ? `no read/write access to ${path}: add your user to the 'kvm' group ` +
          `(sudo usermod -aG kvm $USER, then log in again) or run as root`
        : `cannot open ${path}: ${(e as Error).message}`;
      throw new KvmUnavailableError(why);
    }
    const version = getLibc().ioctl_val(fd, KVM.GET_API_VERSION, 0n);
    if (version !== KVM_API_VERSION) {
      closeFd(fd);
      throw new KvmUnavailableError(`KVM API version ${version}, expected ${KVM_API_VERSION}`);
    }
    const kvm = new Kvm(fd);
    for (const cap of ["USER_MEMORY", "IMMEDIATE_EXIT", "EXT_CPUID"] as const) {
      if (!kvm.checkExtension(KVM_CAP[cap])) {
        kvm.close();
        throw new KvmUnavailableError(`this KVM lacks KVM_CAP_${cap}, which deno-vmm needs`);
      }
    }
    return kvm;
  }

  /** KVM_CHECK_EXTENSION: 0 when absent, else a capability-specific positive value. */
  checkExtension(cap: number): number {
    return Math.max(0, getLibc().ioctl_val(this.fd, KVM.CHECK_EXTENSION, BigInt(cap)));
  }

  /** KVM_CREATE_VM (machine type 0). */
  createVm(): VmFd {
    return new VmFd(ioctlVal(this.fd, KVM.CREATE_VM, 0, "KVM_CREATE_VM"), this);
  }

  /** KVM_GET_SUPPORTED_CPUID: every leaf the host and KVM can offer a guest. */
  supportedCpuid(): CpuidEntry[] {
    const max = 256;
    const buf = new Uint8Array(KVM_CPUID2.size + max * KVM_CPUID_ENTRY2.size);
    const dv = new DataView(buf.buffer);
    dv.setUint32(KVM_CPUID2.nent, max, true);
    ioctlPtr(this.fd, KVM.GET_SUPPORTED_CPUID, buf, "KVM_GET_SUPPORTED_CPUID");
    const n = dv.getUint32(KVM_CPUID2.nent, true);
    const out: CpuidEntry[] = [];
    for (let i = 0; i < n; i++) {
      const o = KVM_CPUID2.entries + i * KVM_CPUID_ENTRY2.size;
      out.push({
        function: dv.getUint32(o + KVM_CPUID_ENTRY2.function, true),
        index: dv.getUint32(o + KVM_CPUID_ENTRY2.index, true),
        flags: dv.getUint32(o + KVM_CPUID_ENTRY2.flags, true),
        eax: dv.getUint32(o + KVM_CPUID_ENTRY2.eax, true),
        ebx: dv.getUint32(o + KVM_CPUID_ENTRY2.ebx, true),
        ecx: dv.getUint32(o + KVM_CPUID_ENTRY2.ecx, true),
        edx: dv.getUint32(o + KVM_CPUID_ENTRY2.edx, true),
      });
    }
    return out;
  }

  /** Closes the system fd. */
  close(): void {
    closeFd(this.fd);
  }
}

/** A VM fd. */
export class VmFd {
  /** The file descriptor. */
  readonly fd: number;
  /** The system handle it came from. */
  readonly kvm: Kvm;

  /**
   * @param fd the VM fd from KVM_CREATE_VM
   * @param kvm the system handle
   */
  constructor(fd: number, kvm: Kvm) {
    this.fd = fd;
    this.kvm = kvm;
  }

  /** KVM_SET_USER_MEMORY_REGION. */
  setUserMemoryRegion(region: {
    slot: number;
    guestPhysAddr: number;
    size: number;
    userspaceAddr: bigint;
  }): void {
    const L = KVM_USERSPACE_MEMORY_REGION;
    const buf = new Uint8Array(L.size);
    const dv = new DataView(buf.buffer);
    dv.setUint32(L.slot, region.slot, true);
    dv.setUint32(L.flags, 0, true);
    dv.setBigUint64(L.guest_phys_addr, BigInt(region.guestPhysAddr), true);
    dv.setBigUint64(L.memory_size, BigInt(region.size), true);
    dv.setBigUint64(L.userspace_addr, region.userspaceAddr, true);
    ioctlPtr(this.fd, KVM.SET_USER_MEMORY_REGION, buf, "KVM_SET_USER_MEMORY_REGION");
  }

  /** KVM_SET_TSS_ADDR (three pages KVM needs for real-mode emulation on VMX). */
  setTssAddr(addr: number): void {
    ioctlVal(this.fd, KVM.SET_TSS_ADDR, addr, "KVM_SET_TSS_ADDR");
  }

  /** KVM_CREATE_VCPU with the given vCPU id (the APIC id). */
  createVcpu(id: number): VcpuFd {
    return new VcpuFd(ioctlVal(this.fd, KVM.CREATE_VCPU, id, "KVM_CREATE_VCPU"), id);
  }

  /** KVM_GET_TSC_KHZ on this VM, 0 when unsupported. */
  tscKhz(): number {
    const r = getLibc().ioctl_val(this.fd, KVM.GET_TSC_KHZ, 0n);
    return r > 0 ? r : 0;
  }

  /** Closes the VM fd. */
  close(): void {
    closeFd(this.fd);
  }
}

function readSegment(dv: DataView, o: number): Segment {
  const S = KVM_SEGMENT;
  return {
    base: dv.getBigUint64(o + S.base, true),
    limit: dv.getUint32(o + S.limit, true),
    selector: dv.getUint16(o + S.selector, true),
    type: dv.getUint8(o + S.type),
    present: dv.getUint8(o + S.present),
    dpl: dv.getUint8(o + S.dpl),
    db: dv.getUint8(o + S.db),
    s: dv.getUint8(o + S.s),
    l: dv.getUint8(o + S.l),
    g: dv.getUint8(o + S.g),
    avl: dv.getUint8(o + S.avl),
    unusable: dv.getUint8(o + S.unusable),
  };
}

function writeSegment(dv: DataView, o: number, s: Segment): void {
  const S = KVM_SEGMENT;
  dv.setBigUint64(o + S.base, s.base, true);
  dv.setUint32(o + S.limit, s.limit >>> 0, true);
  dv.setUint16(o + S.selector, s.selector, true);
  dv.setUint8(o + S.type, s.type);
  dv.setUint8(o + S.present, s.present);
  dv.setUint8(o + S.dpl, s.dpl);
  dv.setUint8(o + S.db, s.db);
  dv.setUint8(o + S.s, s.s);
  dv.setUint8(o + S.l, s.l);
  dv.setUint8(o + S.g, s.g);
  dv.setUint8(o + S.avl, s.avl);
  dv.setUint8(o + S.unusable, s.unusable);
}

const SEGMENT_NAMES = ["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"] as const;
const CONTROL_NAMES = ["cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apic_base"] as const;

/** A vCPU fd. */
export class VcpuFd {
  /** The file descriptor. */
  readonly fd: number;
  /** The vCPU id (APIC id). */
  readonly id: number;

  /**
   * @param fd the vCPU fd from KVM_CREATE_VCPU
   * @param id its id
   */
  constructor(fd: number, id: number) {
    this.fd = fd;
    this.id = id;
  }

  /** Maps this vCPU's `kvm_run` structure (shared with the kernel). */
  mapRun(size: number): Deno.PointerObject {
    return mmap(size, { fd: this.fd, shared: true });
  }

  /** KVM_GET_REGS. */
  getRegs(): Regs {
    const buf = new Uint8Array(KVM_REGS_SIZE);
    ioctlPtr(this.fd, KVM.GET_REGS, buf, "KVM_GET_REGS");
    const dv = new DataView(buf.buffer);
    const r = {} as Regs;
    KVM_REGS_FIELDS.forEach((name, i) => r[name] = dv.getBigUint64(i * 8, true));
    return r;
  }

  /** KVM_SET_REGS. */
  setRegs(regs: Regs): void {
    const buf = new Uint8Array(KVM_REGS_SIZE);
    const dv = new DataView(buf.buffer);
    KVM_REGS_FIELDS.forEach((name, i) =>
      dv.setBigUint64(i * 8, BigInt.asUintN(64, regs[name]), true)
    );
    ioctlPtr(this.fd, KVM.SET_REGS, buf, "KVM_SET_REGS");
  }

  /** KVM_GET_SREGS. */
  getSregs(): Sregs {
    const buf = new Uint8Array(KVM_SREGS.size);
    ioctlPtr(this.fd, KVM.GET_SREGS, buf, "KVM_GET_SREGS");
    const dv = new DataView(buf.buffer);
    const s = {} as Sregs;
    for (const name of SEGMENT_NAMES) s[name] = readSegment(dv, KVM_SREGS[name]);
    for (const name of ["gdt", "idt"] as const) {
      s[name] = {
        base: dv.getBigUint64(KVM_SREGS[name] + KVM_DTABLE.base, true),
        limit: dv.getUint16(KVM_SREGS[name] + KVM_DTABLE.limit, true),
      };
    }
    for (const name of CONTROL_NAMES) s[name] = dv.getBigUint64(KVM_SREGS[name], true);
    return s;
  }

  /** KVM_SET_SREGS (the pending-interrupt bitmap is written empty). */
  setSregs(s: Sregs): void {
    const buf = new Uint8Array(KVM_SREGS.size);
    const dv = new DataView(buf.buffer);
    for (const name of SEGMENT_NAMES) writeSegment(dv, KVM_SREGS[name], s[name]);
    for (const name of ["gdt", "idt"] as const) {
      dv.setBigUint64(KVM_SREGS[name] + KVM_DTABLE.base, s[name].base, true);
      dv.setUint16(KVM_SREGS[name] + KVM_DTABLE.limit, s[name].limit, true);
    }
    for (const name of CONTROL_NAMES) dv.setBigUint64(KVM_SREGS[name], s[name], true);
    ioctlPtr(this.fd, KVM.SET_SREGS, buf, "KVM_SET_SREGS");
  }

  /** KVM_SET_CPUID2. */
  setCpuid(entries: CpuidEntry[]): void {
    const buf = new Uint8Array(KVM_CPUID2.size + entries.length * KVM_CPUID_ENTRY2.size);
    const dv = new DataView(buf.buffer);
    dv.setUint32(KVM_CPUID2.nent, entries.length, true);
    entries.forEach((e, i) => {
      const o = KVM_CPUID2.entries + i * KVM_CPUID_ENTRY2.size;
      for (const k of ["function", "index", "flags", "eax", "ebx", "ecx", "edx"] as const) {
        dv.setUint32(o + KVM_CPUID_ENTRY2[k], e[k] >>> 0, true);
      }
    });
    ioctlPtr(this.fd, KVM.SET_CPUID2, buf, "KVM_SET_CPUID2");
  }

  /** KVM_INTERRUPT: queue an external interrupt vector (no in-kernel irqchip). */
  interrupt(vector: number): void {
    const buf = new Uint8Array(4);
    new DataView(buf.buffer).setUint32(0, vector, true);
    ioctlPtr(this.fd, KVM.INTERRUPT, buf, "KVM_INTERRUPT");
  }

  /** Closes the vCPU fd. */
  close(): void {
    closeFd(this.fd);
  }
}
