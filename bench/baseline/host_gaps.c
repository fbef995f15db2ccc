/*
 * The host's own noise, the floor under the rt scenario (bench/host_noise.ts): one thread per
 * CPU, pinned and real-time (SCHED_FIFO 50 when permitted), reads CLOCK_MONOTONIC in a loop and
 * counts the gaps between two reads: time its CPU went to something that outranks it (an
 * interrupt, a stop-class kernel thread) or that is not in this machine at all (the hypervisor
 * running another guest on the physical CPU). No VMM runs; nothing of ours can cause them.
 *
 * Each thread spins 800 ms, then sleeps 200 ms, so it stays under the kernel's real-time
 * throttling (sched_rt_runtime_us, 950 ms a second by default), whose 50 ms pauses would
 * otherwise be counted; the time across its own sleep is not a gap.
 *
 * Usage: host_gaps SECONDS. Prints one line per CPU:
 *   cpu N rt R spun_ms S gaps_500us A gaps_1ms B gaps_3ms C max_us M lost_us L
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double seconds = 5;

static long long now_ns(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void *probe(void *arg) {
	int cpu = (int)(long)arg;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof set, &set);
	struct sched_param p = {.sched_priority = 50};
	int rt = pthread_setschedparam(pthread_self(), SCHED_FIFO, &p) == 0;
	long long end = now_ns() + (long long)(seconds * 1e9);
	long long spun = 0, max = 0, lost = 0, g500 = 0, g1 = 0, g3 = 0;
	while (now_ns() < end) {
		long long start = now_ns(), last = start, burst_end = start + 800000000LL;
		if (burst_end > end) burst_end = end;
		while (last < burst_end) {
			long long t = now_ns(), gap = t - last;
			if (gap > 500000) {
				g500++;
				lost += gap;
				if (gap > 1000000) g1++;
				if (gap > 3000000) g3++;
				if (gap > max) max = gap;
			}
			last = t;
		}
		spun += last - start;
		if (last < end) usleep(200000);
	}
	printf("cpu %d rt %d spun_ms %lld gaps_500us %lld gaps_1ms %lld gaps_3ms %lld max_us %lld lost_us %lld\n",
	       cpu, rt, spun / 1000000, g500, g1, g3, max / 1000, lost / 1000);
	return NULL;
}

int main(int argc, char **argv) {
	if (argc > 1) seconds = atof(argv[1]);
	if (!(seconds > 0)) {
		fprintf(stderr, "host_gaps: SECONDS must be > 0\n");
		return 2;
	}
	/* Every CPU this process may use (a cpuset may allow fewer than are online). */
	cpu_set_t allowed;
	if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
		perror("host_gaps: sched_getaffinity");
		return 1;
	}
	pthread_t t[CPU_SETSIZE];
	int n = 0;
	for (long cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (CPU_ISSET(cpu, &allowed)) pthread_create(&t[n++], NULL, probe, (void *)cpu);
	}
	for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
	return 0;
}
