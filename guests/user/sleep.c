/*
 * sleep: vCPU 0 sleeps `count` times `ms` milliseconds on its LAPIC timer (the vCPU halts in
 * between) and reports the total time measured on its TSC; lateness per sleep goes to the
 * stats record (latency sum and max). Exits with status 0.
 */
#include "user.h"

void w_sleep(const struct env *e) {
	if (e->cpu != 0) return;
	u64 count = cmdline_u64("count", 10), ms = cmdline_u64("ms", 10);
	struct vcpu_stats *me = &STATS->vcpu[0];
	u64 start = rdtsc();
	for (u64 i = 0; i < count; i++) {
		u64 t0 = rdtsc();
		sys1(SYS_SLEEP, ms * 1000000);
		u64 slept = tsc_to_ns(e, rdtsc() - t0);
		u64 late = slept > ms * 1000000 ? slept - ms * 1000000 : 0;
		me->rounds = i + 1;
		me->latency_sum_ns += late;
		if (late > me->latency_max_ns) me->latency_max_ns = late;
	}
	u64 total_us = tsc_to_ns(e, rdtsc() - start) / 1000;
	print("sleep: done %u x %u ms, total %u us\n", count, ms, total_us);
	user_exit(0);
}
