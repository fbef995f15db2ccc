/*
 * The boot CPU's and the APs' C entry: descriptor tables, the LAPIC, the other CPUs, then ring
 * 3. Everything here runs in KVM's instruction emulator on these machines, so it is short.
 */
#include "kernel.h"

/* Where the ring-3 side finds the PVH start info (entry.S saved %ebx). */
extern u32 start_info_pa;

void kmain(u32 start_info) {
	(void)start_info;
	cpu_init(0);
	idt_init();
	idt_load();
	lapic_init();
	smp_start();
	enter_user(user_main, ustacks[0] + USTACK_SIZE, 0);
}

void ap_main(u32 cpu) {
	cpu_init(cpu);
	idt_load();
	lapic_init();
	enter_user(user_main, ustacks[cpu] + USTACK_SIZE, cpu);
}
