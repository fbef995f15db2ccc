/* The ring-3 library: syscalls, TSC time, formatting, the command line, the stats area. */
#ifndef USER_H
#define USER_H

#include "../kernel/layout.h"
#include "../kernel/stats.h"
#include "sysno.h"

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long u64;

static inline u64 sys2(u64 nr, u64 a, u64 b) {
	u64 ret;
	__asm__ volatile("int3" : "=a"(ret) : "a"(nr), "D"(a), "S"(b) : "memory");
	return ret;
}
static inline u64 sys1(u64 nr, u64 a) { return sys2(nr, a, 0); }

static inline u64 rdtsc(void) {
	u32 lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void outl(unsigned short port, u32 v) {
	__asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port));
}

/* What every workload gets. */
struct env {
	u32 cpu;   /* this vCPU's APIC id */
	u32 ncpus; /* vCPUs in the VM (cmdline ncpus) */
	u64 tsc_khz;
};

/* lib.c */
u64 cmdline_u64(const char *key, u64 fallback);
int cmdline_str(const char *key, char *out, u64 size);
int str_eq(const char *a, const char *b);
u64 tsc_to_ns(const struct env *e, u64 ticks);
u64 ns_to_tsc(const struct env *e, u64 ns);
void print(const char *fmt, ...); /* %u (u64), %s, %x: one locked console write */
void user_exit(u32 status) __attribute__((noreturn));
void park(void) __attribute__((noreturn));
void wait_all_done(const struct env *e);
void mark_done(void);
void work(u64 iterations);
u64 calibrate_work(const struct env *e, u64 us);

/* The workloads. Each runs on every vCPU. */
void w_hello(const struct env *e);
void w_spin(const struct env *e);
void w_ipi(const struct env *e);
void w_sleep(const struct env *e);
void w_portio(const struct env *e);
void w_mmio(const struct env *e);
void w_triple(const struct env *e);
void w_emufail(const struct env *e);
void w_badmmio(const struct env *e);
void w_periodic(const struct env *e);
void w_lock(const struct env *e);
void w_attacker(const struct env *e);
void w_echo(const struct env *e);
void w_fuzz(const struct env *e);

#endif
