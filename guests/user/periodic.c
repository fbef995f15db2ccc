/*
 * periodic: a real-time task per vCPU. Every `period_ms` a job of `compute_us` of work is
 * released; it must complete before the next release (implicit deadline). Between jobs the
 * vCPU sleeps on its LAPIC timer (it halts). The work is a fixed number of loop iterations,
 * calibrated at start as the best of a few bursts, so a vCPU that is descheduled mid-job
 * really finishes later. `jobs` jobs per vCPU (default 100); then vCPU 0 reports
 * `periodic: J jobs, M misses, max lateness L us` over all vCPUs and exits with status 0.
 * Stats record: [1] jobs done, [4] misses, [2] sum and [3] max of lateness (ns, late jobs).
 */
#include "user.h"

void w_periodic(const struct env *e) {
	u64 period = cmdline_u64("period_ms", 10) * 1000000UL;
	u64 compute_us = cmdline_u64("compute_us", 2000);
	u64 jobs = cmdline_u64("jobs", 100);
	struct vcpu_stats *me = &STATS->vcpu[e->cpu];
	u64 iters = calibrate_work(e, compute_us);
	u64 start = rdtsc();
	for (u64 j = 0; j < jobs; j++) {
		u64 release = start + ns_to_tsc(e, j * period);
		u64 now = rdtsc();
		if (now < release) sys1(SYS_SLEEP, tsc_to_ns(e, release - now));
		work(iters);
		u64 done = rdtsc(), deadline = release + ns_to_tsc(e, period);
		if (done > deadline) {
			u64 late = tsc_to_ns(e, done - deadline);
			me->misses++;
			me->latency_sum_ns += late;
			if (late > me->latency_max_ns) me->latency_max_ns = late;
		}
		me->rounds = j + 1;
		me->last_tsc = done;
	}
	mark_done();
	if (e->cpu != 0) return;
	wait_all_done(e);
	u64 misses = 0, max = 0;
	for (u32 i = 0; i < e->ncpus; i++) {
		misses += STATS->vcpu[i].misses;
		if (STATS->vcpu[i].latency_max_ns > max) max = STATS->vcpu[i].latency_max_ns;
	}
	print("periodic: %u jobs, %u misses, max lateness %u us\n", jobs * e->ncpus, misses,
	      max / 1000);
	user_exit(0);
}
