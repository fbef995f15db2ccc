/*
 * Misbehaving guests, for the host's error paths: `triple` (an exception with an empty IDT in
 * ring 0), `emufail` (an instruction KVM's emulator cannot run, in ring 0), `badmmio` (a store
 * to an address with neither RAM nor a device; then it carries on and exits with status 0).
 */
#include "user.h"

#define NOWHERE 0xd0000000UL

void w_triple(const struct env *e) {
	if (e->cpu == 0) sys1(SYS_CRASH, CRASH_TRIPLE);
}

void w_emufail(const struct env *e) {
	if (e->cpu == 0) sys1(SYS_CRASH, CRASH_EMULATION);
}

void w_badmmio(const struct env *e) {
	if (e->cpu != 0) return;
	*(volatile u32 *)NOWHERE = 0xdead;
	print("badmmio: still running\n");
	user_exit(0);
}
