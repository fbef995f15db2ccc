/*
 * echo: a request/response server on vCPU 0 (the "ping under load" case). The host's client
 * counts a request into the echo page (guests/ABI.md) and interrupts vCPU 0 (the IPI vector);
 * the vCPU serves every request not yet done (`service_us` of work each), rings the doorbell
 * after each one (an MMIO store of the done count: the host timestamps the response there), and
 * halts until the next interrupt. It runs until the host stops the VM. Stats record of vCPU 0:
 * [1] requests served.
 */
#include "user.h"

struct echo_page {
	volatile u64 posted; /* host: requests so far */
	volatile u64 done;   /* guest: requests answered */
};

void w_echo(const struct env *e) {
	if (e->cpu != 0) return;
	struct echo_page *page = (struct echo_page *)ECHO_PAGE;
	volatile u32 *doorbell = (volatile u32 *)ECHO_DOORBELL;
	u64 service = calibrate_work(e, cmdline_u64("service_us", 50));
	struct vcpu_stats *me = &STATS->vcpu[0];
	print("echo: ready\n");
	for (;;) {
		while (page->done < page->posted) {
			work(service);
			page->done++;
			*doorbell = (u32)page->done;
			me->rounds = page->done;
		}
		sys1(SYS_WAIT_IPI, 0);
	}
}
