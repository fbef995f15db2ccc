/* The kernel's shared declarations: types, port I/O, the trap frame, per-CPU state. */
#ifndef KERNEL_H
#define KERNEL_H

#include "layout.h"

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef long i64;

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline u64 rdtsc(void) {
	u32 lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}

/* What vectors.S pushes, lowest address first. */
struct trap_frame {
	u64 r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
	u64 vector, error;
	u64 rip, cs, rflags, rsp, ss; /* the CPU's iret frame */
};

/* Per-CPU state, indexed by APIC id. Interrupt handlers set, syscalls wait. */
struct percpu {
	volatile u32 timer_fired;
	volatile u32 ipis;      /* IPIs received */
	u32 ipis_seen;          /* IPIs consumed by sys_wait_ipi */
	volatile u32 stray;     /* interrupts at vectors the kernel does not use */
};
extern struct percpu percpu[MAX_CPUS];
extern u8 kstacks[MAX_CPUS][KSTACK_SIZE];
extern u8 ustacks[MAX_CPUS][USTACK_SIZE];

/* The CPU we run on: kernel stacks are per APIC id and KSTACK_SIZE-aligned (entry.S). */
static inline u32 this_cpu(void) {
	u64 sp;
	__asm__ volatile("mov %%rsp, %0" : "=r"(sp));
	return (u32)((sp - (u64)kstacks) / KSTACK_SIZE);
}

/* cpu.c */
void cpu_init(u32 cpu);
/* trap.c */
void idt_init(void);
void idt_load(void);
void idt_kill(void);
/* lapic.c */
void lapic_init(void);
void lapic_eoi(void);
void lapic_oneshot(u32 ns);
void lapic_send_ipi(u32 dest, u32 vector);
void lapic_init_sipi_all(u32 sipi_vector);
u32 lapic_tsc_khz(void);
/* smp.c */
void smp_start(void);
/* console.c */
void console_write(const char *s, u64 n);
void console_puts(const char *s);
void console_hex(u64 v);
/* syscall.c */
void syscall(struct trap_frame *f);
/* user/main.c: the ring-3 entry of every CPU */
void user_main(u32 cpu);
void enter_user(void (*entry)(u32), void *stack_top, u32 cpu);

/* gcc may emit calls to these even in freestanding code. */
void *memset(void *d, int c, u64 n);
void *memcpy(void *d, const void *s, u64 n);

#endif
