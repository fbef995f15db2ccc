/* Syscall numbers (int 0x80), shared by the kernel and the ring-3 library. */
#ifndef SYSNO_H
#define SYSNO_H

#define SYS_WRITE 0    /* (buf, len) -> len: console output */
#define SYS_EXIT 1     /* (status): the VM stops with it (debug-exit port) */
#define SYS_SLEEP 2    /* (ns): halt until the LAPIC timer fires, ns < 2^32 */
#define SYS_YIELD 3    /* (): tell the host this vCPU gives up its slot */
#define SYS_IPI 4      /* (apic id): send the IPI vector */
#define SYS_WAIT_IPI 5 /* (): halt until an IPI not yet consumed arrived */
#define SYS_PARK 6     /* (): halt forever with interrupts off */
#define SYS_TSC_KHZ 7  /* () -> TSC kHz measured against the LAPIC timer */
#define SYS_CRASH 8    /* (kind): misbehave in ring 0 on purpose */

#define CRASH_TRIPLE 1
#define CRASH_EMULATION 2

#endif
