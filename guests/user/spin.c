/*
 * spin: a CPU hog. Every vCPU counts iterations into its stats record (the host reads them
 * without an exit) for `seconds` (0: forever); then vCPU 0 reports and exits with status 0.
 */
#include "user.h"

void w_spin(const struct env *e) {
	u64 seconds = cmdline_u64("seconds", 1);
	struct vcpu_stats *me = &STATS->vcpu[e->cpu];
	u64 start = rdtsc();
	u64 end = seconds ? start + ns_to_tsc(e, seconds * 1000000000UL) : ~0UL;
	u64 n = 0;
	for (;;) {
		for (int i = 0; i < 4096; i++) {
			n++;
			__asm__ volatile("" ::: "memory");
		}
		me->iterations = n;
		u64 now = rdtsc();
		me->last_tsc = now;
		if (now >= end) break;
	}
	mark_done();
	if (e->cpu != 0) return;
	wait_all_done(e);
	u64 total = 0;
	for (u32 i = 0; i < e->ncpus; i++) total += STATS->vcpu[i].iterations;
	print("spin: %u iterations on %u vcpus in %u s\n", total, (u64)e->ncpus, seconds);
	user_exit(0);
}
