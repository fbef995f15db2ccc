/*
 * attacker: runs for `run_us` (default 9,500: just under one 10 ms accounting tick), then
 * sleeps `sleep_us` (default 500) on its LAPIC timer, over and over for `seconds` (0: forever).
 * Against a scheduler that charges CPU time by sampling who runs at each tick, the attacker
 * is rarely caught running and gets far more than its share: the pattern behind Xen commit
 * 78c9b2a64b, which moved credit1 to exact accounting. Stats record: [0] work iterations.
 */
#include "user.h"

void w_attacker(const struct env *e) {
	u64 seconds = cmdline_u64("seconds", 0);
	u64 run = ns_to_tsc(e, cmdline_u64("run_us", 9500) * 1000);
	u64 nap = cmdline_u64("sleep_us", 500) * 1000;
	struct vcpu_stats *me = &STATS->vcpu[e->cpu];
	u64 start = rdtsc(), end = seconds ? start + ns_to_tsc(e, seconds * 1000000000UL) : ~0UL;
	u64 n = 0;
	for (u64 now = start; now < end; now = rdtsc()) {
		u64 stop = now + run;
		while (rdtsc() < stop) {
			for (int i = 0; i < 1024; i++) {
				n++;
				__asm__ volatile("" ::: "memory");
			}
			me->iterations = n;
		}
		me->rounds++;
		sys1(SYS_SLEEP, nap);
	}
	mark_done();
	if (e->cpu != 0) return;
	wait_all_done(e);
	print("attacker: %u iterations\n", n);
	user_exit(0);
}
