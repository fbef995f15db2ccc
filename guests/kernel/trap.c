/*
 * The IDT and the trap dispatcher: exceptions report and stop the VM, the LAPIC timer and IPI
 * vectors set per-CPU flags that syscalls wait on, other interrupt vectors are dropped, INT3
 * from ring 3 is a syscall (layout.h).
 */
#include "kernel.h"

struct idt_gate {
	u16 offset_lo, selector;
	u8 ist, type_attr;
	u16 offset_mid;
	u32 offset_hi, zero;
} __attribute__((packed));

static struct idt_gate idt[256];
static struct {
	u16 limit;
	u64 base;
} __attribute__((packed)) idt_ptr = {sizeof(idt) - 1, (u64)idt};

extern const u64 trap_stubs[][2];
extern const u64 trap_stub_count;

void idt_init(void) {
	for (u64 i = 0; i < trap_stub_count; i++) {
		u64 vec = trap_stubs[i][0], addr = trap_stubs[i][1];
		struct idt_gate *g = &idt[vec];
		g->offset_lo = addr & 0xffff;
		g->selector = SEL_KCODE;
		/* present 64-bit interrupt gate; DPL 3 only for the syscall gate */
		g->type_attr = vec == VEC_SYSCALL ? 0xee : 0x8e;
		g->offset_mid = (addr >> 16) & 0xffff;
		g->offset_hi = addr >> 32;
	}
}

void idt_load(void) { __asm__ volatile("lidt %0" ::"m"(idt_ptr)); }

/* An empty IDT: the next exception becomes a triple fault (workload "triple"). */
void idt_kill(void) {
	static const struct {
		u16 limit;
		u64 base;
	} __attribute__((packed)) none = {0, 0};
	__asm__ volatile("lidt %0" ::"m"(none));
}

static void exception(struct trap_frame *f) {
	console_puts("exception ");
	console_hex(f->vector);
	console_puts(" at rip ");
	console_hex(f->rip);
	console_puts(" error ");
	console_hex(f->error);
	console_puts("\n");
	outl(PORT_DEBUG_EXIT, EXIT_EXCEPTION);
	for (;;) __asm__ volatile("cli; hlt");
}

/*
 * Ring-3 port I/O. The workloads run with IOPL 3, which is enough on hardware; under PVM the
 * real IOPL is always 0 (pvm-spec.rst, "Underlying RFLAGS"), so their IN/OUT raise #GP and land
 * here. Decode the instruction (SDM Vol. 2: E4-E7 with an imm8 port, EC-EF with DX; a 66 prefix
 * makes it 16-bit), do it from ring 0 and step over it. Returns 0 if it was something else.
 */
static int emulate_port_io(struct trap_frame *f) {
	const u8 *ip = (const u8 *)f->rip;
	u64 len = 0, size = 4;
	if (ip[0] == 0x66) size = 2, len = 1;
	u8 op = ip[len++];
	u16 port;
	if (op >= 0xe4 && op <= 0xe7) port = ip[len++];
	else if (op >= 0xec && op <= 0xef) port = (u16)f->rdx;
	else return 0;
	if (!(op & 1)) size = 1;
	int out = op & 2;
	if (out) {
		if (size == 1) __asm__ volatile("outb %b0, %w1" ::"a"(f->rax), "Nd"(port));
		else if (size == 2) __asm__ volatile("outw %w0, %w1" ::"a"(f->rax), "Nd"(port));
		else __asm__ volatile("outl %k0, %w1" ::"a"(f->rax), "Nd"(port));
	} else {
		u32 v;
		if (size == 1) {
			u8 b;
			__asm__ volatile("inb %w1, %b0" : "=a"(b) : "Nd"(port));
			f->rax = (f->rax & ~0xffUL) | b;
		} else if (size == 2) {
			u16 w;
			__asm__ volatile("inw %w1, %w0" : "=a"(w) : "Nd"(port));
			f->rax = (f->rax & ~0xffffUL) | w;
		} else {
			__asm__ volatile("inl %w1, %k0" : "=a"(v) : "Nd"(port));
			f->rax = v; /* a 32-bit result zero-extends */
		}
	}
	f->rip += len;
	return 1;
}

void trap(struct trap_frame *f) {
	struct percpu *me = &percpu[this_cpu()];
	switch (f->vector) {
	case VEC_SYSCALL:
		if ((f->cs & 3) != 3) exception(f);
		syscall(f);
		break;
	case VEC_TIMER:
		me->timer_fired = 1;
		lapic_eoi();
		break;
	case VEC_IPI:
		me->ipis++;
		lapic_eoi();
		break;
	case VEC_SPURIOUS:
		break; /* no EOI for the spurious vector (SDM Vol. 3A 10.9) */
	case 13:
		if ((f->cs & 3) == 3 && emulate_port_io(f)) break;
		exception(f);
		break;
	default:
		/* An interrupt nobody asked for (a vector >= 32: every one has a gate, vectors.S) is
		 * acknowledged and dropped; only the CPU's own exceptions stop the VM. */
		if (f->vector < 32) exception(f);
		me->stray++;
		lapic_eoi();
	}
}
