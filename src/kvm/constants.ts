/**
 * KVM ioctl numbers, exit reasons and capability ids, from `include/uapi/linux/kvm.h`
 * (KVMIO = 0xAE) and the `_IO/_IOR/_IOW/_IOWR` encoding of `include/uapi/asm-generic/ioctl.h`.
 *
 * @module
 */

const KVMIO = 0xae;
const NONE = 0, WRITE = 1, READ = 2;

function ioc(dir: number, nr: number, size: number): bigint {
  // dir:2 | size:14 | type:8 | nr:8
  return (BigInt(dir) << 30n) | (BigInt(size) << 16n) | (BigInt(KVMIO) << 8n) | BigInt(nr);
}

/** ioctl request numbers, named as in kvm.h. */
export const KVM = {
  GET_API_VERSION: ioc(NONE, 0x00, 0),
  CREATE_VM: ioc(NONE, 0x01, 0),
  CHECK_EXTENSION: ioc(NONE, 0x03, 0),
  GET_VCPU_MMAP_SIZE: ioc(NONE, 0x04, 0),
  GET_SUPPORTED_CPUID: ioc(READ | WRITE, 0x05, 8),
  CREATE_VCPU: ioc(NONE, 0x41, 0),
  SET_USER_MEMORY_REGION: ioc(WRITE, 0x46, 32),
  SET_TSS_ADDR: ioc(NONE, 0x47, 0),
  SET_IDENTITY_MAP_ADDR: ioc(WRITE, 0x48, 8),
  RUN: ioc(NONE, 0x80, 0),
  GET_REGS: ioc(READ, 0x81, 144),
  SET_REGS: ioc(WRITE, 0x82, 144),
  GET_SREGS: ioc(READ, 0x83, 312),
  SET_SREGS: ioc(WRITE, 0x84, 312),
  INTERRUPT: ioc(WRITE, 0x86, 4),
  SET_CPUID2: ioc(WRITE, 0x90, 8),
  GET_TSC_KHZ: ioc(NONE, 0xa3, 0),
} as const;

/** The only KVM API version there is (kvm.h `KVM_API_VERSION`). */
export const KVM_API_VERSION = 12;

/** Capabilities checked with KVM_CHECK_EXTENSION (kvm.h `KVM_CAP_*`). */
export const KVM_CAP = {
  IRQCHIP: 0,
  HLT: 1,
  USER_MEMORY: 3,
  SET_TSS_ADDR: 4,
  EXT_CPUID: 7,
  NR_VCPUS: 9,
  NR_MEMSLOTS: 10,
  MAX_VCPUS: 66,
  IMMEDIATE_EXIT: 136,
  GET_TSC_KHZ: 61,
} as const;

/** `kvm_run.exit_reason` values (kvm.h `KVM_EXIT_*`). */
export const KVM_EXIT = {
  UNKNOWN: 0,
  EXCEPTION: 1,
  IO: 2,
  HYPERCALL: 3,
  DEBUG: 4,
  HLT: 5,
  MMIO: 6,
  IRQ_WINDOW_OPEN: 7,
  SHUTDOWN: 8,
  FAIL_ENTRY: 9,
  INTR: 10,
  SET_TPR: 11,
  TPR_ACCESS: 12,
  NMI: 16,
  INTERNAL_ERROR: 17,
  SYSTEM_EVENT: 24,
  X86_RDMSR: 29,
  X86_WRMSR: 30,
} as const;

/** Name of an exit reason, for messages and metrics. */
export function exitReasonName(reason: number): string {
  for (const [name, value] of Object.entries(KVM_EXIT)) {
    if (value === reason) return name;
  }
  return `EXIT_${reason}`;
}

/** `kvm_run.io.direction` (kvm.h `KVM_EXIT_IO_IN/OUT`). */
export const KVM_EXIT_IO_IN = 0;
/** Port output. */
export const KVM_EXIT_IO_OUT = 1;

/** `kvm_run.internal.suberror` values (kvm.h `KVM_INTERNAL_ERROR_*`). */
export const KVM_INTERNAL_ERROR = {
  EMULATION: 1,
  SIMUL_EX: 2,
  DELIVERY_EV: 3,
  UNEXPECTED_EXIT_REASON: 4,
} as const;
