/*
 * The local APIC, xAPIC MMIO at 0xfee00000 (Intel SDM Vol. 3A chapter 10): enable, EOI, the
 * one-shot timer, IPIs and the INIT/SIPI start of the other CPUs. The timer's input clock is
 * 1 GHz with divide-by-1, as in KVM's in-kernel LAPIC and in deno-vmm's.
 */
#include "kernel.h"

#define LAPIC_BASE 0xfee00000UL
#define REG_ID 0x020
#define REG_TPR 0x080
#define REG_EOI 0x0b0
#define REG_SVR 0x0f0
#define REG_ICR_LO 0x300
#define REG_ICR_HI 0x310
#define REG_LVT_TIMER 0x320
#define REG_TIMER_INIT 0x380
#define REG_TIMER_CUR 0x390
#define REG_TIMER_DIV 0x3e0

#define ICR_INIT 0x500
#define ICR_SIPI 0x600
#define ICR_ASSERT 0x4000
#define ICR_ALL_BUT_SELF 0xc0000
#define LVT_MASKED 0x10000

static inline void wr(u32 reg, u32 v) { *(volatile u32 *)(LAPIC_BASE + reg) = v; }
static inline u32 rd(u32 reg) { return *(volatile u32 *)(LAPIC_BASE + reg); }

/* Mask both 8259 PICs (OCW1): interrupts come through the LAPIC only. Under QEMU the BIOS left
 * the PIT on IRQ 0 = vector 8, which would look like a double fault. */
static void pic_mask_all(void) {
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
}

void lapic_init(void) {
	if (this_cpu() == 0) pic_mask_all();
	wr(REG_SVR, 0x100 | VEC_SPURIOUS); /* software enable */
	wr(REG_TIMER_DIV, 0xb);            /* divide by 1 */
}

void lapic_eoi(void) { wr(REG_EOI, 0); }

void lapic_oneshot(u32 ns) {
	wr(REG_LVT_TIMER, VEC_TIMER);
	wr(REG_TIMER_INIT, ns ? ns : 1);
}

void lapic_send_ipi(u32 dest, u32 vector) {
	wr(REG_ICR_HI, dest << 24);
	wr(REG_ICR_LO, vector | ICR_ASSERT);
}

void lapic_init_sipi_all(u32 sipi_vector) {
	wr(REG_ICR_HI, 0);
	wr(REG_ICR_LO, ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_INIT);
	wr(REG_ICR_LO, ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_SIPI | sipi_vector);
}

/* TSC kHz measured against 10 ms of the LAPIC timer (used when the host did not say). */
u32 lapic_tsc_khz(void) {
	wr(REG_LVT_TIMER, LVT_MASKED | VEC_TIMER);
	wr(REG_TIMER_INIT, 0xffffffff);
	u64 t0 = rdtsc();
	while (0xffffffff - rd(REG_TIMER_CUR) < 10000000)
		;
	u64 t1 = rdtsc();
	wr(REG_TIMER_INIT, 0);
	return (u32)((t1 - t0) / 10);
}
