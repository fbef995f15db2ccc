# The guest kernel's sources and flags, the one list of them: the Makefile includes it and
# src/vm/guest_kernel.ts reads it to build the built-in kernel on first use (fetching the files
# beside mod.ts). Keep to plain `NAME := words` lines (a `\` continues a line): that reader
# understands nothing more. Every file of kernel/ and user/ is listed (tests/guest_kernel_test.ts).
CFLAGS := -O2 -g0 -ffreestanding -fno-pic -fno-pie -fno-stack-protector -mno-red-zone \
	-mgeneral-regs-only -mcmodel=small -fno-asynchronous-unwind-tables -Wall -Wextra -Werror \
	-std=gnu11
LDFLAGS := -nostdlib -static -no-pie -Wl,--build-id=none -Wl,-n -Wl,--no-warn-rwx-segments
LDSCRIPT := kernel.ld

KSRC := kernel/entry.S kernel/trampoline.S kernel/vectors.S kernel/main.c kernel/cpu.c \
	kernel/trap.c kernel/lapic.c kernel/smp.c kernel/console.c kernel/syscall.c
USRC := user/main.c user/lib.c user/hello.c user/spin.c user/ipi.c user/sleep.c \
	user/exits.c user/faults.c \
	user/periodic.c user/lock.c user/attacker.c user/echo.c user/fuzz.c
HDR := kernel/kernel.h kernel/layout.h kernel/stats.h user/sysno.h user/user.h
