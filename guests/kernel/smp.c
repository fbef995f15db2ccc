/*
 * SMP bring-up as on hardware: copy the real-mode trampoline to its page, then INIT and a
 * STARTUP IPI to every other CPU (SDM Vol. 3A 8.4.4.1). Each AP finds its own stack by its
 * APIC id (entry.S) and reports in from ring 3 by counting itself in the stats area.
 */
#include "kernel.h"

extern const u8 trampoline_start[], trampoline_end[];

void smp_start(void) {
	memcpy((void *)TRAMPOLINE_ADDR, trampoline_start, trampoline_end - trampoline_start);
	lapic_init_sipi_all(SIPI_VECTOR);
}
