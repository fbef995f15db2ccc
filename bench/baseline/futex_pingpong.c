/*
 * The baseline of the slot hand-off bench (bench/sched.ts): two threads pass a token back
 * and forth through a futex, the cheapest way one thread can make another run. Prints the
 * mean one-way hand-off in ns: `futex one-way: N ns`.
 *
 * Usage: futex_pingpong [ROUNDS [CPU_PING CPU_PONG]]: with CPUs, each thread is pinned to its
 * own (the same CPU twice: both share it, as a slot's threads do).
 */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static _Atomic int turn; /* 0: ping's turn, 1: pong's */
static long rounds = 20000;
static int cpus[2] = {-1, -1};

static void pin(int cpu) {
	if (cpu < 0) return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0) {
		fprintf(stderr, "futex_pingpong: cannot pin to CPU %d\n", cpu);
		exit(1);
	}
}

static void wait_for(int want) {
	int v;
	while ((v = atomic_load(&turn)) != want) syscall(SYS_futex, &turn, FUTEX_WAIT_PRIVATE, v, 0, 0, 0);
}

static void pass(int to) {
	atomic_store(&turn, to);
	syscall(SYS_futex, &turn, FUTEX_WAKE_PRIVATE, 1, 0, 0, 0);
}

static void *pong(void *arg) {
	(void)arg;
	pin(cpus[1]);
	for (long i = 0; i < rounds; i++) {
		wait_for(1);
		pass(0);
	}
	return 0;
}

int main(int argc, char **argv) {
	if (argc > 1) rounds = atol(argv[1]);
	if (argc > 3) {
		cpus[0] = atoi(argv[2]);
		cpus[1] = atoi(argv[3]);
	}
	pin(cpus[0]);
	pthread_t t;
	pthread_create(&t, 0, pong, 0);
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < rounds; i++) {
		pass(1);
		wait_for(0);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	pthread_join(t, 0);
	double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
	printf("futex one-way: %.0f ns\n", ns / rounds / 2);
	return 0;
}
