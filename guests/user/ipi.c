/*
 * ipi: vCPU 0 and vCPU 1 ping-pong an IPI `rounds` times; vCPU 0 times each round trip on its
 * TSC and reports the count, mean and max, then exits with status 0.
 */
#include "user.h"

void w_ipi(const struct env *e) {
	u64 rounds = cmdline_u64("rounds", 1000);
	if (e->ncpus < 2) {
		if (e->cpu == 0) {
			print("ipi: needs 2 vcpus, have %u\n", (u64)e->ncpus);
			user_exit(1);
		}
		return;
	}
	struct vcpu_stats *me = &STATS->vcpu[e->cpu];
	if (e->cpu == 1) {
		for (u64 r = 0; r < rounds; r++) {
			sys1(SYS_WAIT_IPI, 0);
			sys1(SYS_IPI, 0);
			me->rounds = r + 1;
		}
		return;
	}
	if (e->cpu != 0) return;
	u64 sum = 0, max = 0;
	for (u64 r = 0; r < rounds; r++) {
		u64 t0 = rdtsc();
		sys1(SYS_IPI, 1);
		sys1(SYS_WAIT_IPI, 0);
		u64 ns = tsc_to_ns(e, rdtsc() - t0);
		sum += ns;
		if (ns > max) max = ns;
		me->rounds = r + 1;
		me->latency_sum_ns = sum;
		me->latency_max_ns = max;
	}
	print("ipi: %u round trips, mean %u us, max %u us\n", rounds, sum / rounds / 1000,
	      max / 1000);
	user_exit(0);
}
