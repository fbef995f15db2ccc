/*
 * The baseline of the slot hand-off bench (bench/sched.ts): two threads pass a token back
 * and forth through a futex, the cheapest way one thread can make another run. Prints the
 * mean one-way hand-off in ns: `futex one-way: N ns`.
 *
 * Usage: futex_pingpong [ROUNDS]
 */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static _Atomic int turn; /* 0: ping's turn, 1: pong's */
static long rounds = 20000;

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
	for (long i = 0; i < rounds; i++) {
		wait_for(1);
		pass(0);
	}
	return 0;
}

int main(int argc, char **argv) {
	if (argc > 1) rounds = atol(argv[1]);
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
