/* hello: every vCPU prints its id; vCPU 0 waits for all of them and exits with status 0. */
#include "user.h"

void w_hello(const struct env *e) {
	print("hello from vcpu %u of %u\n", (u64)e->cpu, (u64)e->ncpus);
	mark_done();
	if (e->cpu != 0) return;
	wait_all_done(e);
	print("hello: all %u vcpus up\n", (u64)e->ncpus);
	user_exit(0);
}
