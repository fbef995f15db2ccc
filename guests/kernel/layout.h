/*
 * Constants shared by the kernel's C and assembly: segment selectors, the
 * memory layout of guests/ABI.md, vectors and per-CPU sizes.
 */
#ifndef LAYOUT_H
#define LAYOUT_H

/* GDT selectors (cpu.c builds the table). The order 0x18/0x20/0x28 is the
 * one SYSRET expects if it is ever used: user CS32, user SS = +8, user
 * CS64 = +16 (Intel SDM Vol. 2B, SYSRET). */
#define SEL_KCODE    0x08 /* 64-bit kernel code */
#define SEL_KDATA    0x10 /* kernel data / stack */
#define SEL_UCODE32  0x18 /* unused placeholder (DPL 3) */
#define SEL_UDATA    0x20 /* user data / stack (DPL 3) */
#define SEL_UCODE    0x28 /* 64-bit user code (DPL 3) */
#define SEL_KCODE32  0x30 /* 32-bit kernel code: the AP trampoline's protected mode */
#define SEL_TSS0     0x38 /* TSS of CPU 0; CPU i at SEL_TSS0 + 16 * i */
#define GDT_ENTRIES  (7 + 2 * MAX_CPUS)

#define MAX_CPUS     64
#define KSTACK_SIZE  0x1000 /* per-CPU ring-0 stack; a power of two (this_cpu()) */
#define USTACK_SIZE  0x2000 /* per-CPU ring-3 stack */

/* guests/ABI.md */
#define START_INFO_ADDR  0x1000
#define TRAMPOLINE_ADDR  0x8000 /* AP start page: SIPI vector 0x08 */
#define SIPI_VECTOR      (TRAMPOLINE_ADDR >> 12)
#define STATS_ADDR       0x50000
#define STATS_SIZE       0x10000
#define ECHO_PAGE        0x60000 /* echo workload: request counters shared with the host */

/* Interrupt vectors. 0..31 are the architectural exceptions (SDM Vol. 3A
 * 6.3.1); the LAPIC refuses vectors below 16. */
#define VEC_TIMER    0x20
#define VEC_IPI      0x21
/* The syscall gate is INT3 (vector 3, DPL 3). Why not `int 0x80` or SYSCALL: under PVM (these
 * machines' KVM) a ring-3 `int n` raises #UD and SYSCALL lands in PVM's paravirtual supervisor
 * mode, where CLI/HLT/OUT fault; vector 3 is one of the few gates PVM lets ring 3 use
 * (Documentation/virt/kvm/x86/pvm-spec.rst, "Underlying IDT"), and it works on hardware too. */
#define VEC_SYSCALL  3
#define VEC_SPURIOUS 0xff

/* Status written to the debug-exit port after an unexpected exception. */
#define EXIT_EXCEPTION 0x7f

/* I/O ports */
#define PORT_COM1       0x3f8
#define PORT_DEBUG_EXIT 0xf4
#define PORT_BENCH      0xf0
#define BENCH_MMIO      0xd1000000UL /* `mmio` workload: stores exit, the host ignores them */
#define ECHO_DOORBELL   0xd1001000UL /* echo workload: a store answers requests up to its value */
#define PORT_YIELD      0xf8 /* sys_yield: tells the host the vCPU gives up its slot */

#endif
