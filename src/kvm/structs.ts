/**
 * Byte layouts of the KVM structures deno-vmm reads and writes, for x86-64, as in
 * `include/uapi/linux/kvm.h` and `arch/x86/include/uapi/asm/kvm.h`. `tests/kvm_structs_test.ts`
 * compiles a C program against the host's headers and checks every size and offset here.
 *
 * @module
 */

/** `struct kvm_run`: the fields used, and the offsets of the exit union's members. */
export const KVM_RUN = {
  request_interrupt_window: 0,
  immediate_exit: 1,
  exit_reason: 8,
  ready_for_interrupt_injection: 12,
  if_flag: 13,
  flags: 14,
  cr8: 16,
  apic_base: 24,
  // union at 32
  io_direction: 32,
  io_size: 33,
  io_port: 34,
  io_count: 36,
  io_data_offset: 40,
  mmio_phys_addr: 32,
  mmio_data: 40,
  mmio_len: 48,
  mmio_is_write: 52,
  fail_entry_reason: 32,
  fail_entry_cpu: 40,
  internal_suberror: 32,
  internal_ndata: 36,
  internal_data: 40,
  ex_exception: 32,
  ex_error_code: 36,
} as const;

/** `struct kvm_regs`: 18 u64 registers, in this order. */
export const KVM_REGS_FIELDS = [
  "rax",
  "rbx",
  "rcx",
  "rdx",
  "rsi",
  "rdi",
  "rsp",
  "rbp",
  "r8",
  "r9",
  "r10",
  "r11",
  "r12",
  "r13",
  "r14",
  "r15",
  "rip",
  "rflags",
] as const;

/** Size of `struct kvm_regs`. */
export const KVM_REGS_SIZE = 144;

/** `struct kvm_segment` (24 bytes). */
export const KVM_SEGMENT = {
  size: 24,
  base: 0,
  limit: 8,
  selector: 12,
  type: 14,
  present: 15,
  dpl: 16,
  db: 17,
  s: 18,
  l: 19,
  g: 20,
  avl: 21,
  unusable: 22,
} as const;

/** `struct kvm_dtable` (16 bytes). */
export const KVM_DTABLE = { size: 16, base: 0, limit: 8 } as const;

/** `struct kvm_sregs` (312 bytes). */
export const KVM_SREGS = {
  size: 312,
  cs: 0,
  ds: 24,
  es: 48,
  fs: 72,
  gs: 96,
  ss: 120,
  tr: 144,
  ldt: 168,
  gdt: 192,
  idt: 208,
  cr0: 224,
  cr2: 232,
  cr3: 240,
  cr4: 248,
  cr8: 256,
  efer: 264,
  apic_base: 272,
  interrupt_bitmap: 280,
} as const;

/** `struct kvm_userspace_memory_region` (32 bytes). */
export const KVM_USERSPACE_MEMORY_REGION = {
  size: 32,
  slot: 0,
  flags: 4,
  guest_phys_addr: 8,
  memory_size: 16,
  userspace_addr: 24,
} as const;

/** `struct kvm_cpuid2` header (8 bytes) and `struct kvm_cpuid_entry2` (40 bytes). */
export const KVM_CPUID2 = { size: 8, nent: 0, entries: 8 } as const;
/** `struct kvm_cpuid_entry2`. */
export const KVM_CPUID_ENTRY2 = {
  size: 40,
  function: 0,
  index: 4,
  flags: 8,
  eax: 12,
  ebx: 16,
  ecx: 20,
  edx: 24,
} as const;

/** `struct kvm_interrupt` (4 bytes: the vector). */
export const KVM_INTERRUPT_SIZE = 4;
