/* The stats area (guests/ABI.md; mirrored by src/vm/stats.ts). */
#ifndef STATS_H
#define STATS_H

#include "layout.h"

#define STATS_MAGIC 0x534d5644 /* "DVMS" */
#define STATS_VERSION 1

struct vcpu_stats {
	volatile unsigned long iterations;
	volatile unsigned long rounds;
	volatile unsigned long latency_sum_ns;
	volatile unsigned long latency_max_ns;
	volatile unsigned long misses;
	volatile unsigned long last_tsc;
	volatile unsigned long extra[10];
};

struct stats {
	volatile unsigned int magic;
	volatile unsigned int version;
	volatile unsigned int vcpus_up;
	volatile unsigned int workload;
	volatile unsigned int done; /* vCPUs that finished their part (not in ABI: guest-internal) */
	unsigned int pad[11];
	struct vcpu_stats vcpu[MAX_CPUS];
};

#define STATS ((struct stats *)STATS_ADDR)

#endif
