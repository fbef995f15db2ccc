/*
 * lock: the VM's vCPUs contend for one ring-3 spinlock: each loops { `work_us` of work
 * outside; take the lock; `cs_us` of work inside; release } for `seconds`. A waiter spins, so
 * a lock holder that loses its (v)CPU stalls everyone behind it: lock-holder preemption.
 *
 * `lock=tas` (default): test-and-test-and-set, the lock Linux guests fall back to under a
 * hypervisor without paravirtual spinlocks (arch/x86/include/asm/qspinlock.h,
 * virt_spin_lock()): whoever runs when the lock is free takes it.
 * `lock=ticket`: a FIFO ticket lock. The next ticket's owner must run for anyone to progress,
 * so a descheduled *waiter* stalls the lock too (lock-waiter preemption; Ouyang & Lange,
 * "Preemptable Ticket Spinlocks", VEE 2013).
 *
 * Stats record: [0] acquisitions. vCPU 0 reports
 * `lock: A acquisitions in T us, R/s, V exclusion violations` (V counts times a vCPU found
 * another inside the critical section: 0 for a correct lock).
 */
#include "user.h"

static struct {
	volatile u32 next, serving;
} ticket __attribute__((aligned(64)));

static struct {
	volatile u32 held;
} flag __attribute__((aligned(64)));

static struct {
	volatile u32 inside, violations;
} check __attribute__((aligned(64)));

static void acquire(int tas, u32 *t) {
	if (tas) {
		while (__atomic_exchange_n(&flag.held, 1, __ATOMIC_ACQUIRE))
			while (__atomic_load_n(&flag.held, __ATOMIC_RELAXED)) cpu_relax();
		return;
	}
	*t = __atomic_fetch_add(&ticket.next, 1, __ATOMIC_ACQUIRE);
	while (__atomic_load_n(&ticket.serving, __ATOMIC_ACQUIRE) != *t) cpu_relax();
}

static void release(int tas, u32 t) {
	if (tas) __atomic_store_n(&flag.held, 0, __ATOMIC_RELEASE);
	else __atomic_store_n(&ticket.serving, t + 1, __ATOMIC_RELEASE);
}

void w_lock(const struct env *e) {
	char kind[16] = "tas";
	cmdline_str("lock", kind, sizeof(kind));
	int tas = str_eq(kind, "tas");
	if (!tas && !str_eq(kind, "ticket")) {
		if (e->cpu == 0) {
			print("lock: unknown lock '%s' (tas or ticket)\n", kind);
			user_exit(2);
		}
		return;
	}
	u64 seconds = cmdline_u64("seconds", 1);
	u64 in = calibrate_work(e, cmdline_u64("cs_us", 2));
	u64 out = calibrate_work(e, cmdline_u64("work_us", 20));
	struct vcpu_stats *me = &STATS->vcpu[e->cpu];
	u64 start = rdtsc(), end = start + ns_to_tsc(e, seconds * 1000000000UL);
	u64 n = 0;
	while (rdtsc() < end) {
		work(out);
		u32 t = 0;
		acquire(tas, &t);
		if (__atomic_fetch_add(&check.inside, 1, __ATOMIC_RELAXED) != 0)
			__atomic_fetch_add(&check.violations, 1, __ATOMIC_RELAXED);
		work(in);
		__atomic_fetch_sub(&check.inside, 1, __ATOMIC_RELAXED);
		release(tas, t);
		me->iterations = ++n;
	}
	mark_done();
	if (e->cpu != 0) return;
	wait_all_done(e);
	u64 total = 0;
	for (u32 i = 0; i < e->ncpus; i++) total += STATS->vcpu[i].iterations;
	u64 us = tsc_to_ns(e, rdtsc() - start) / 1000;
	print("lock: %u acquisitions in %u us, %u/s, %u exclusion violations\n", total, us,
	      total * 1000000 / us, (u64)check.violations);
	user_exit(0);
}
