/*
 * portio: vCPU 0 writes a running counter to the bench port (32-bit OUT from ring 3, one VM
 * exit each) for `seconds`, counts its own writes, and reports writes per second measured on
 * its TSC, the same way under any VMM. Exits with status 0.
 */
#include "user.h"

void w_portio(const struct env *e) {
	if (e->cpu != 0) return;
	u64 seconds = cmdline_u64("seconds", 1);
	struct vcpu_stats *me = &STATS->vcpu[0];
	u64 start = rdtsc(), end = start + ns_to_tsc(e, seconds * 1000000000UL), now = start;
	u64 n = 0;
	while (now < end) {
		for (int i = 0; i < 64; i++) outl(PORT_BENCH, (u32)n++);
		me->iterations = n;
		now = rdtsc();
	}
	u64 us = tsc_to_ns(e, now - start) / 1000;
	print("portio: %u writes in %u us, %u writes/s\n", n, us, n * 1000000 / us);
	user_exit(0);
}
