/*
 * Ring 3's entry on every vCPU: count in, read the command line, wait for the other vCPUs,
 * run the workload (guests/ABI.md lists them, in this order: the stats area's workload id).
 */
#include "user.h"

static const struct {
	const char *name;
	void (*run)(const struct env *);
} workloads[] = {
	{"hello", w_hello}, {"spin", w_spin}, {"ipi", w_ipi}, {"sleep", w_sleep},
	{"portio", w_portio}, {"triple", w_triple}, {"emufail", w_emufail}, {"badmmio", w_badmmio},
	{"mmio", w_mmio}, {"periodic", w_periodic}, {"lock", w_lock}, {"attacker", w_attacker},
	{"echo", w_echo}, {"fuzz", w_fuzz},
};
#define NWORKLOADS (sizeof(workloads) / sizeof(workloads[0]))

static volatile u64 shared_tsc_khz;

void user_main(u32 cpu) {
	struct env e = {cpu, (u32)cmdline_u64("ncpus", 1), 0};
	char name[32] = "hello";
	cmdline_str("workload", name, sizeof(name));
	u32 id = 0;
	while (id < NWORKLOADS && !str_eq(workloads[id].name, name)) id++;

	if (cpu == 0) {
		u64 khz = cmdline_u64("tsc_khz", 0);
		shared_tsc_khz = khz ? khz : sys1(SYS_TSC_KHZ, 0);
		STATS->workload = id;
		STATS->version = STATS_VERSION;
		STATS->magic = STATS_MAGIC;
	}
	__atomic_add_fetch(&STATS->vcpus_up, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&STATS->vcpus_up, __ATOMIC_ACQUIRE) < e.ncpus || !shared_tsc_khz)
		cpu_relax();
	e.tsc_khz = shared_tsc_khz;

	if (id == NWORKLOADS) {
		if (cpu == 0) {
			print("unknown workload '%s'\n", name);
			user_exit(2);
		}
		park();
	}
	workloads[id].run(&e);
	park();
}
