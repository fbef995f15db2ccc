/*
 * fuzz: every vCPU hammers every device the host emulates with random values, sizes and
 * alignments, `count` accesses each, from a PRNG seeded by `seed` and the vCPU. Ring 3 reaches
 * MMIO directly (the LAPIC page, the echo doorbell, addresses nobody claims); port I/O goes
 * through the kernel's #GP decode (trap.c), as any ring-3 IN/OUT does here.
 *
 * What it does, by weight (see pick_class):
 * - LAPIC: every offset of the page incl. reserved and read-only registers, sizes 1/2/4/8,
 *   aligned or not, random values (LVT vectors kept out of 16..31, which the kernel's stubs
 *   would read as exceptions with an error code: the VMM itself refuses 0..15);
 * - ICR: every delivery mode, shorthand and destination mode, APIC ids that do not exist;
 *   INIT/SIPI storms at running vCPUs (never at vCPU 0, which keeps the run going: see
 *   init_storm) with the trampoline's SIPI vector;
 * - the UART's eight ports, the PIC ports, the bench and yield ports, reads of the debug-exit
 *   port, and ports nobody claims, each with widths 1, 2 and 4;
 * - the echo doorbell with stale, repeated, future and absurd sequence numbers (and odd sizes);
 * - MMIO nobody claims, including accesses that straddle the LAPIC page's edges.
 *
 * A vCPU restarted by INIT/SIPI comes back through the AP path to user_main and here, and goes
 * on from the count it had. When every vCPU is done, vCPU 0 exits with status 0 through the
 * debug-exit port at a random width and offset. Stats record of vCPU i: [0] accesses,
 * [1] restarts; extra[0..6]: LAPIC, ICR, INIT/SIPI, UART, echo, other ports, unclaimed MMIO.
 */
#include "user.h"

typedef unsigned short u16;

#define LAPIC 0xfee00000UL
#define ICR_LO 0x300
#define ICR_HI 0x310

enum { C_LAPIC, C_ICR, C_INIT, C_UART, C_ECHO, C_PORT, C_MMIO, NCLASS };

/* vCPUs some vCPU sent INIT to: vCPU 0 sends them SIPIs until the end (init_storm). */
static volatile u32 inited[64];
static volatile u32 finished[64];

struct rng {
	u64 s;
};

/* xorshift64* (Vigna, "An experimental exploration of Marsaglia's xorshift generators"). */
static u64 next(struct rng *r) {
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 0x2545f4914f6cdd1dUL;
}
static u64 below(struct rng *r, u64 n) { return next(r) % n; }

static u64 mmio_read(u64 a, u32 size) {
	switch (size) {
	case 1: return *(volatile u8 *)a;
	case 2: return *(volatile u16 *)a;
	case 4: return *(volatile u32 *)a;
	default: return *(volatile u64 *)a;
	}
}

static void mmio_write(u64 a, u32 size, u64 v) {
	switch (size) {
	case 1: *(volatile u8 *)a = (u8)v; break;
	case 2: *(volatile u16 *)a = (u16)v; break;
	case 4: *(volatile u32 *)a = (u32)v; break;
	default: *(volatile u64 *)a = v;
	}
}

/* A read-modify-write instruction on MMIO (one read exit and one write exit). */
static void mmio_add(u64 a, u32 v) { __asm__ volatile("addl %1, %0" : "+m"(*(volatile u32 *)a) : "r"(v)); }

static u32 port_in(u16 port, u32 size) {
	if (size == 1) {
		u8 v;
		__asm__ volatile("inb %w1, %b0" : "=a"(v) : "Nd"(port));
		return v;
	}
	if (size == 2) {
		u16 v;
		__asm__ volatile("inw %w1, %w0" : "=a"(v) : "Nd"(port));
		return v;
	}
	u32 v;
	__asm__ volatile("inl %w1, %k0" : "=a"(v) : "Nd"(port));
	return v;
}

static void port_out(u16 port, u32 size, u32 v) {
	if (size == 1) __asm__ volatile("outb %b0, %w1" ::"a"(v), "Nd"(port));
	else if (size == 2) __asm__ volatile("outw %w0, %w1" ::"a"(v), "Nd"(port));
	else __asm__ volatile("outl %k0, %w1" ::"a"(v), "Nd"(port));
}

static u32 any_size(struct rng *r) { return 1u << below(r, 4); }      /* 1, 2, 4, 8 */
static u32 port_size(struct rng *r) { return 1u << below(r, 3); }     /* 1, 2, 4 */

/* A vector the kernel takes as an interrupt (>= 32) or one the LAPIC refuses (< 16). */
static u32 safe_vector(u32 v) {
	v &= 0xff;
	return (v & 0xf0) == 0x10 ? v | 0x20 : v;
}

static void icr_send(u32 hi, u32 lo) {
	*(volatile u32 *)(LAPIC + ICR_HI) = hi;
	*(volatile u32 *)(LAPIC + ICR_LO) = lo;
}

/* Random ICR writes: every mode but INIT and SIPI (init_storm), any destination. Returns 2. */
static u64 icr(struct rng *r) {
	static const u32 modes[] = {0, 1, 2, 3, 4, 7}; /* fixed, lowest, SMI, reserved, NMI, ExtINT */
	u32 mode = modes[below(r, 6)];
	u32 lo = safe_vector((u32)next(r)) | mode << 8;
	lo |= (u32)(next(r) & ((1 << 11) | (1 << 14) | (1 << 15))); /* logical, level, trigger */
	lo |= (u32)below(r, 4) << 18;                                  /* shorthand */
	u32 dest = below(r, 4) == 0 ? 0xff : (u32)below(r, 256);
	icr_send(dest << 24, lo);
	return 2;
}

/*
 * INIT then SIPI, in bursts, at a vCPU that runs (or at APIC ids nobody has). Physical
 * destination only and never vCPU 0: vCPU 0 sends every vCPU ever INITed a SIPI from time to time
 * (a sender INITed between its INIT and its SIPI leaves its target waiting), so a run always ends.
 * Also an INIT level de-assert (a no-op). Returns the accesses made.
 */
static u64 init_storm(struct rng *r, const struct env *e) {
	u32 target = e->ncpus > 1 && below(r, 4) ? 1 + (u32)below(r, e->ncpus - 1) : 1 + (u32)below(r, 254);
	if (target < 64) inited[target] = 1;
	u64 n = 0;
	for (u64 i = 1 + below(r, 3); i; i--, n += 2) icr_send(target << 24, 0x4500);
	if (below(r, 4) == 0) icr_send(target << 24, 0x0500), n += 2; /* level de-assert */
	for (u64 i = 1 + below(r, 2); i; i--, n += 2) icr_send(target << 24, 0x4600 | SIPI_VECTOR);
	return n;
}

static void revive(const struct env *e) {
	for (u32 t = 1; t < e->ncpus && t < 64; t++)
		if (inited[t]) icr_send(t << 24, 0x4600 | SIPI_VECTOR);
}

static u64 lapic(struct rng *r) {
	u32 off, size;
	if (below(r, 2)) {
		off = (u32)below(r, 64) << 4; /* a register slot (0x000..0x3f0), aligned */
		size = 4;
	} else {
		size = any_size(r);
		off = (u32)below(r, 0x1000 - size + 1); /* any offset, any size, inside the page */
	}
	u64 a = LAPIC + off;
	if (below(r, 2)) {
		mmio_read(a, size);
		return 1;
	}
	u32 v = (u32)next(r);
	if (size == 4 && !(off & 0xf)) {
		if (off == ICR_LO) return icr(r);
		if (off >= 0x320 && off <= 0x370) v = (v & ~0xffu) | safe_vector(v);
		if (off == 0x380 && below(r, 2)) v &= 0xff; /* short timer periods too */
	}
	/* Not on an LVT: the sum's vector could land in 16..31. */
	if (below(r, 8) == 0 && size == 4 && !(off & 3) && (off < 0x320 || off > 0x37f)) {
		mmio_add(a, v);
		return 2;
	}
	mmio_write(a, size, v);
	return 1;
}

static u64 uart(struct rng *r) {
	u16 port = (u16)(0x3f8 + below(r, 8));
	u32 size = below(r, 4) ? 1 : port_size(r);
	if (below(r, 2)) port_in(port, size);
	else port_out(port, size, (u32)next(r));
	return 1;
}

/* The echo doorbell: answer counts that are stale, repeated, ahead of the requests, or absurd. */
static u64 echo(struct rng *r) {
	volatile u64 *page = (volatile u64 *)ECHO_PAGE; /* [0] posted (host), [1] done (guest) */
	u64 posted = page[0], done = page[1];
	u64 v;
	switch (below(r, 6)) {
	case 0: /* answer one request, as the echo workload does */
		if (done < posted) page[1] = ++done;
		v = done;
		break;
	case 1: v = done; break;                    /* repeated */
	case 2: v = done - below(r, 1000); break;   /* stale */
	case 3: v = posted + 1 + below(r, 1000); break; /* ahead of any request */
	case 4: v = 0xffffffff - below(r, 4); break;
	default: v = next(r);
	}
	u32 size = below(r, 8) ? 4 : any_size(r);
	u64 a = ECHO_DOORBELL + (below(r, 8) ? 0 : below(r, 8));
	if (below(r, 16) == 0) mmio_read(a, size);
	else mmio_write(a, size, v);
	return 1;
}

/* Other ports: PIC, bench, yield, debug-exit (read only: a write ends the VM), anything. */
static u64 ports(struct rng *r) {
	static const u16 known[] = {0x20, 0x21, 0xa0, 0xa1, 0xf0, 0xf8, 0xf4, 0xf5, 0xf6, 0xf7};
	u16 port = below(r, 2) ? known[below(r, 10)] : (u16)next(r);
	u32 size = port_size(r);
	if (below(r, 2) || (port >= 0xf4 && port <= 0xf7)) port_in(port, size);
	else port_out(port, size, (u32)next(r));
	return 1;
}

/* MMIO nobody claims: anywhere from 0xd0000000 to 4 GiB, and straddling the LAPIC page. */
static u64 unclaimed(struct rng *r) {
	u32 size = any_size(r);
	u64 a;
	switch (below(r, 4)) {
	case 0: a = LAPIC - 8 + below(r, 8); break;          /* into the page from below */
	case 1: a = LAPIC + 0x1000 - 8 + below(r, 8); break; /* out of it at the top */
	default:
		a = 0xd0000000UL + below(r, 0x30000000UL - 8);
		if (a >= LAPIC - 8 && a < LAPIC + 0x1000) a += 0x2000;
	}
	if (below(r, 2)) mmio_read(a, size);
	else mmio_write(a, size, next(r));
	return 1;
}

/* Weights of the classes, per mille; `classes` (a bit mask, default all) keeps some only. */
static const u32 weight[NCLASS] = {400, 150, 2, 98, 150, 80, 120};

static u32 pick_class(struct rng *r, u32 mask) {
	u32 total = 0;
	for (u32 c = 0; c < NCLASS; c++)
		if (mask & 1u << c) total += weight[c];
	u64 x = below(r, total);
	for (u32 c = 0; c < NCLASS; c++) {
		if (!(mask & 1u << c)) continue;
		if (x < weight[c]) return c;
		x -= weight[c];
	}
	return C_MMIO;
}

static int all_finished(const struct env *e) {
	for (u32 i = 0; i < e->ncpus && i < 64; i++)
		if (!finished[i]) return 0;
	return 1;
}

void w_fuzz(const struct env *e) {
	struct vcpu_stats *me = &STATS->vcpu[e->cpu];
	u64 count = cmdline_u64("count", 100000);
	if (me->iterations) me->rounds++; /* back after INIT/SIPI */
	struct rng r = {(cmdline_u64("seed", 1) + 1) * 0x9e3779b97f4a7c15UL ^ (u64)e->cpu << 32 ^
			me->rounds * 0xbf58476d1ce4e5b9UL};
	if (!r.s) r.s = 1;
	u32 mask = (u32)cmdline_u64("classes", (1u << NCLASS) - 1) & ((1u << NCLASS) - 1);
	if (!mask) mask = 1u << C_LAPIC;
	u64 n = me->iterations;
	while (n < count) {
		u32 c = pick_class(&r, mask);
		u64 k;
		switch (c) {
		case C_LAPIC: k = lapic(&r); break;
		case C_ICR: k = icr(&r); break;
		case C_INIT: k = e->cpu == 0 ? icr(&r) : init_storm(&r, e); break;
		case C_UART: k = uart(&r); break;
		case C_ECHO: k = echo(&r); break;
		case C_PORT: k = ports(&r); break;
		default: k = unclaimed(&r);
		}
		n += k;
		me->extra[c] += k;
		me->iterations = n;
		if (e->cpu == 0 && (n & 0xff) < k) revive(e);
	}
	finished[e->cpu] = 1;
	if (e->cpu != 0) return;
	while (!all_finished(e)) {
		revive(e);
		for (int i = 0; i < 100000; i++) cpu_relax();
	}
	u64 total = 0;
	for (u32 i = 0; i < e->ncpus; i++) total += STATS->vcpu[i].iterations;
	port_out(0x3fb, 1, 0x03); /* LCR: 8N1, divisor latch off: the fuzzing may have left it on */
	print("\nfuzz: %u accesses on %u vcpus\n", total, (u64)e->ncpus);
	/* debug-exit, status 0, at an odd width or offset */
	struct rng last = {r.s};
	u32 size = port_size(&last);
	port_out((u16)(0xf4 + below(&last, 5 - size)), size, 0);
	for (;;) cpu_relax();
}
