/*
 * Per-CPU descriptor state: the TSS (its rsp0 is where ring-3 interrupts land) and its GDT
 * descriptor (Intel SDM Vol. 3A 7.2.3, the 16-byte 64-bit TSS descriptor).
 */
#include "kernel.h"

struct tss {
	u32 reserved0;
	u64 rsp0, rsp1, rsp2;
	u64 reserved1;
	u64 ist[7];
	u64 reserved2;
	u16 reserved3;
	u16 iomap_base;
} __attribute__((packed));

static struct tss tss[MAX_CPUS];
extern u64 gdt[];

u8 kstacks[MAX_CPUS][KSTACK_SIZE] __attribute__((aligned(KSTACK_SIZE)));
u8 ustacks[MAX_CPUS][USTACK_SIZE] __attribute__((aligned(16)));
struct percpu percpu[MAX_CPUS];

void cpu_init(u32 cpu) {
	struct tss *t = &tss[cpu];
	u64 base = (u64)t;
	u64 limit = sizeof(*t) - 1;
	u32 sel = SEL_TSS0 + 16 * cpu;

	t->rsp0 = (u64)kstacks[cpu] + KSTACK_SIZE;
	t->iomap_base = sizeof(*t); /* no I/O bitmap: ring 3 has IOPL 3 */
	/* type 9 (available 64-bit TSS), present */
	gdt[sel / 8] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89UL << 40) |
		       (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
	gdt[sel / 8 + 1] = base >> 32;
	__asm__ volatile("ltr %w0" ::"r"(sel));

}

void *memset(void *d, int c, u64 n) {
	u8 *p = d;
	while (n--) *p++ = (u8)c;
	return d;
}

void *memcpy(void *d, const void *s, u64 n) {
	u8 *p = d;
	const u8 *q = s;
	while (n--) *p++ = *q++;
	return d;
}
