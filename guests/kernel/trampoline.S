/*
 * The AP start page. smp.c copies [trampoline_start, trampoline_end) to TRAMPOLINE_ADDR; a
 * SIPI with vector TRAMPOLINE_ADDR >> 12 starts the AP here in real mode with CS = 0x0800,
 * IP = 0 (Intel SDM Vol. 3A 8.4.4). It loads the kernel's GDT and jumps to ap_start32
 * (entry.S), which joins the boot CPU's path to long mode.
 */
#include "layout.h"

#define HERE(sym) ((sym) - trampoline_start + TRAMPOLINE_ADDR)

	.section .data.trampoline, "aw"
	.code16
	.globl trampoline_start, trampoline_end
trampoline_start:
	cli
	xorw %ax, %ax
	movw %ax, %ds
	lgdtl HERE(tramp_gdt_ptr)
	movl %cr0, %eax
	orl $1, %eax
	movl %eax, %cr0
	ljmpl $SEL_KCODE32, $ap_start32

	.balign 4
tramp_gdt_ptr:
	.word GDT_ENTRIES * 8 - 1
	.long gdt
trampoline_end:

	.section .note.GNU-stack, "", @progbits
