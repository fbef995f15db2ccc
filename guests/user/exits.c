/*
 * The exit benchmarks: vCPU 0 writes a running counter for `seconds`, one VM exit per write,
 * counts its own writes and reports writes per second measured on its TSC, the same way under
 * any VMM; then exits with status 0.
 *
 * - portio: 32-bit OUT to the bench port from ring 3. Under PVM each one also goes through the
 *   kernel's #GP handler, which KVM emulates (guests/ABI.md), so it measures that path too.
 * - mmio: 32-bit stores to the bench MMIO page from ring 3: the store exits straight to the
 *   VMM, so this one shows the VMM's own cost per exit.
 */
#include "user.h"

static void run(const struct env *e, const char *name, int mmio) {
	if (e->cpu != 0) return;
	u64 seconds = cmdline_u64("seconds", 1);
	struct vcpu_stats *me = &STATS->vcpu[0];
	volatile u32 *page = (volatile u32 *)BENCH_MMIO;
	u64 start = rdtsc(), end = start + ns_to_tsc(e, seconds * 1000000000UL), now = start;
	u64 n = 0;
	while (now < end) {
		if (mmio)
			for (int i = 0; i < 64; i++) *page = (u32)n++;
		else
			for (int i = 0; i < 64; i++) outl(PORT_BENCH, (u32)n++);
		me->iterations = n;
		now = rdtsc();
	}
	u64 us = tsc_to_ns(e, now - start) / 1000;
	print("%s: %u writes in %u us, %u writes/s\n", name, n, us, n * 1000000 / us);
	user_exit(0);
}

void w_portio(const struct env *e) { run(e, "portio", 0); }
void w_mmio(const struct env *e) { run(e, "mmio", 1); }
