/* The ring-3 library (user.h). */
#include "user.h"

#include <stdarg.h>

extern u32 start_info_pa;

/* hvm_start_info.cmdline_paddr is at offset 24 (Xen include/public/arch-x86/hvm/start_info.h). */
static const char *cmdline(void) {
	u64 pa = *(volatile u64 *)((u64)start_info_pa + 24);
	return pa ? (const char *)pa : "";
}

/* Finds `key=` at a word start; returns the value's start or 0. */
static const char *find(const char *key) {
	const char *s = cmdline();
	u64 n = 0;
	while (key[n]) n++;
	while (*s) {
		while (*s == ' ') s++;
		u64 i = 0;
		while (i < n && s[i] == key[i]) i++;
		if (i == n && s[i] == '=') return s + n + 1;
		while (*s && *s != ' ') s++;
	}
	return 0;
}

u64 cmdline_u64(const char *key, u64 fallback) {
	const char *v = find(key);
	if (!v || *v < '0' || *v > '9') return fallback;
	u64 x = 0;
	while (*v >= '0' && *v <= '9') x = x * 10 + (u64)(*v++ - '0');
	return x;
}

int cmdline_str(const char *key, char *out, u64 size) {
	const char *v = find(key);
	if (!v) return 0;
	u64 i = 0;
	while (v[i] && v[i] != ' ' && i + 1 < size) {
		out[i] = v[i];
		i++;
	}
	out[i] = 0;
	return 1;
}

int str_eq(const char *a, const char *b) {
	while (*a && *a == *b) a++, b++;
	return *a == *b;
}

u64 tsc_to_ns(const struct env *e, u64 t) { return t * 1000000 / e->tsc_khz; }
u64 ns_to_tsc(const struct env *e, u64 ns) { return ns * e->tsc_khz / 1000000; }

static volatile u32 console_lock;

static void lock(void) {
	while (__atomic_exchange_n(&console_lock, 1, __ATOMIC_ACQUIRE)) cpu_relax();
}
static void unlock(void) { __atomic_store_n(&console_lock, 0, __ATOMIC_RELEASE); }

static u64 put_u64(char *p, u64 v, u32 base) {
	char tmp[20];
	u64 n = 0, i = 0;
	do {
		tmp[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (n) p[i++] = tmp[--n];
	return i;
}

void print(const char *fmt, ...) {
	char buf[256];
	u64 n = 0;
	va_list ap;
	va_start(ap, fmt);
	for (const char *f = fmt; *f && n < sizeof(buf) - 24; f++) {
		if (*f != '%') {
			buf[n++] = *f;
			continue;
		}
		f++;
		if (*f == 'u') {
			n += put_u64(buf + n, va_arg(ap, u64), 10);
		} else if (*f == 'x') {
			n += put_u64(buf + n, va_arg(ap, u64), 16);
		} else if (*f == 's') {
			for (const char *s = va_arg(ap, const char *); *s && n < sizeof(buf) - 24; s++)
				buf[n++] = *s;
		} else {
			buf[n++] = *f;
		}
	}
	va_end(ap);
	lock();
	sys2(SYS_WRITE, (u64)buf, n);
	unlock();
}

void user_exit(u32 status) {
	sys1(SYS_EXIT, status);
	for (;;) cpu_relax();
}

void park(void) {
	sys1(SYS_PARK, 0);
	for (;;) cpu_relax();
}

void mark_done(void) { __atomic_add_fetch(&STATS->done, 1, __ATOMIC_SEQ_CST); }

void wait_all_done(const struct env *e) {
	while (__atomic_load_n(&STATS->done, __ATOMIC_ACQUIRE) < e->ncpus) cpu_relax();
}

/* A unit of work the compiler cannot remove: `iterations` loop trips. */
/* Out of line, so that calibrate_work() times the very loop the workloads run: inlined there,
 * the compiler emitted a different loop that ran half as fast (work_us=20 took about 10 us). */
__attribute__((noinline)) void work(u64 iterations) {
	for (u64 i = 0; i < iterations; i++) __asm__ volatile("" ::: "memory");
}

/*
 * Iterations of work() that take `us` microseconds on this vCPU when it is not interrupted:
 * after a warm-up of about 1 ms (a vCPU that just booted or woke runs its first loops slower:
 * once a second's work ran 53 % faster than a calibration without it), the best of 5 timed
 * bursts of 1,000,000 iterations (about 0.3 ms each on these machines; a burst that lost its CPU
 * only looks slower).
 */
u64 calibrate_work(const struct env *e, u64 us) {
	const u64 probe = 1000000;
	u64 best = ~0UL;
	work(4 * probe);
	for (int k = 0; k < 5; k++) {
		u64 t0 = rdtsc();
		work(probe);
		u64 dt = rdtsc() - t0;
		if (dt < best) best = dt;
	}
	u64 ns = tsc_to_ns(e, best);
	return ns ? probe * us * 1000 / ns : probe;
}
