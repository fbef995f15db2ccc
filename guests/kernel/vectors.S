/*
 * Interrupt and exception entry stubs, the common trap path, and the drop to ring 3.
 *
 * Every stub leaves the same frame (struct trap_frame in kernel.h): the general registers,
 * the vector, an error code (0 when the CPU pushes none) and the CPU's own iret frame.
 * Vectors that push an error code: Intel SDM Vol. 3A table 6-1.
 */
#include "layout.h"


	.text
	.code64

.macro STUB vec, has_error
	.balign 16
vec_\vec:
	.if \has_error == 0
	pushq $0
	.endif
	pushq $\vec
	jmp trap_common
.endm

	STUB 0, 0
	STUB 1, 0
	STUB 2, 0
	STUB 3, 0
	STUB 4, 0
	STUB 5, 0
	STUB 6, 0
	STUB 7, 0
	STUB 8, 1
	STUB 9, 0
	STUB 10, 1
	STUB 11, 1
	STUB 12, 1
	STUB 13, 1
	STUB 14, 1
	STUB 15, 0
	STUB 16, 0
	STUB 17, 1
	STUB 18, 0
	STUB 19, 0
	STUB 20, 0
	STUB 21, 1
	STUB 22, 0
	STUB 23, 0
	STUB 24, 0
	STUB 25, 0
	STUB 26, 0
	STUB 27, 0
	STUB 28, 0
	STUB 29, 1
	STUB 30, 1
	STUB 31, 0
/* Vectors 32..255, external interrupts (no error code): one 16-byte stub each, in order. */
	.balign 16
ext_stubs:
	.set v, 32
	.rept 224
	.balign 16
	pushq $0
	pushq $v
	jmp trap_common
	.set v, v + 1
	.endr

trap_common:
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	cld
	movq %rsp, %rdi
	call trap
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rbp
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rbx
	popq %rax
	addq $16, %rsp
	iretq

/* The table trap.c installs: pairs of (vector, stub). */
	.section .rodata
	.balign 8
	.globl trap_stubs, trap_stub_count
trap_stubs:
	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.quad \v, vec_\v
	.endr
	.set v, 32
	.rept 224
	.quad v, ext_stubs + (v - 32) * 16
	.set v, v + 1
	.endr
trap_stub_count:
	.quad 256

/*
 * enter_user(entry, user_stack_top, cpu): iretq to ring 3 with IF set and IOPL 3 (the
 * workloads write the bench port and the debug-exit port themselves), %rdi = cpu.
 */
	.text
	.globl enter_user
enter_user:
	movq %rdi, %rax
	movq %rdx, %rdi
	pushq $(SEL_UDATA | 3)
	pushq %rsi
	pushq $0x3202
	pushq $(SEL_UCODE | 3)
	pushq %rax
	xorl %esi, %esi
	xorl %edx, %edx
	iretq

	.section .note.GNU-stack, "", @progbits
