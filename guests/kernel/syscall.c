/*
 * Syscalls (INT3 from ring 3, layout.h says why: number in rax, arguments in rdi, rsi; result
 * in rax). The numbers are
 * guests/user/user.h's. Waiting syscalls use `sti; hlt`: the STI shadow means an interrupt
 * that arrives between the check and the HLT still ends the HLT (SDM Vol. 2B, STI).
 */
#include "kernel.h"
#include "../user/sysno.h"

/* Sleeps (HLT) until *flag is set, with interrupts enabled only while halted. */
static void wait_for(volatile u32 *flag) {
	for (;;) {
		__asm__ volatile("cli");
		if (*flag) break;
		__asm__ volatile("sti; hlt");
	}
}

static void crash(u64 kind) {
	if (kind == CRASH_TRIPLE) {
		idt_kill();
		__asm__ volatile("ud2");
	} else if (kind == CRASH_EMULATION) {
		/* CMPXCHG16B is one of the instructions KVM's emulator does not implement. */
		static u64 target[2] __attribute__((aligned(16)));
		__asm__ volatile("lock cmpxchg16b %0" : "+m"(target[0]) : "a"(0), "d"(0), "b"(1), "c"(1)
				 : "memory");
	}
}

void syscall(struct trap_frame *f) {
	struct percpu *me = &percpu[this_cpu()];
	u64 ret = 0;
	switch (f->rax) {
	case SYS_WRITE:
		console_write((const char *)f->rdi, f->rsi);
		ret = f->rsi;
		break;
	case SYS_EXIT:
		outl(PORT_DEBUG_EXIT, (u32)f->rdi);
		for (;;) __asm__ volatile("cli; hlt");
	case SYS_SLEEP:
		me->timer_fired = 0;
		lapic_oneshot((u32)f->rdi);
		wait_for(&me->timer_fired);
		break;
	case SYS_YIELD:
		outb(PORT_YIELD, 0);
		break;
	case SYS_IPI:
		lapic_send_ipi((u32)f->rdi, VEC_IPI);
		break;
	case SYS_WAIT_IPI:
		for (;;) {
			__asm__ volatile("cli");
			if (me->ipis != me->ipis_seen) break;
			__asm__ volatile("sti; hlt");
		}
		me->ipis_seen++;
		break;
	case SYS_PARK:
		for (;;) __asm__ volatile("cli; hlt");
	case SYS_TSC_KHZ:
		ret = lapic_tsc_khz();
		break;
	case SYS_CRASH:
		crash(f->rdi);
		break;
	default:
		ret = (u64)-1;
	}
	f->rax = ret;
}
