/*
 * lock: the VM's vCPUs contend for one ring-3 ticket spinlock: each loops { `work_us` of
 * work outside; take the lock; `cs_us` of work inside; release } for `seconds`. A waiter spins,
 * so a lock holder that loses its (v)CPU stalls everyone behind it: lock-holder preemption.
 * Stats record: [0] acquisitions. vCPU 0 reports `lock: A acquisitions in T us, R/s`.
 */
#include "user.h"

static struct {
	volatile u32 next, serving;
} ticket __attribute__((aligned(64)));

void w_lock(const struct env *e) {
	u64 seconds = cmdline_u64("seconds", 1);
	u64 in = calibrate_work(e, cmdline_u64("cs_us", 2));
	u64 out = calibrate_work(e, cmdline_u64("work_us", 20));
	struct vcpu_stats *me = &STATS->vcpu[e->cpu];
	u64 start = rdtsc(), end = start + ns_to_tsc(e, seconds * 1000000000UL);
	u64 n = 0;
	while (rdtsc() < end) {
		work(out);
		u32 t = __atomic_fetch_add(&ticket.next, 1, __ATOMIC_ACQUIRE);
		while (__atomic_load_n(&ticket.serving, __ATOMIC_ACQUIRE) != t) cpu_relax();
		work(in);
		__atomic_store_n(&ticket.serving, t + 1, __ATOMIC_RELEASE);
		me->iterations = ++n;
	}
	mark_done();
	if (e->cpu != 0) return;
	wait_all_done(e);
	u64 total = 0;
	for (u32 i = 0; i < e->ncpus; i++) total += STATS->vcpu[i].iterations;
	u64 us = tsc_to_ns(e, rdtsc() - start) / 1000;
	print("lock: %u acquisitions in %u us, %u/s\n", total, us, total * 1000000 / us);
	user_exit(0);
}
