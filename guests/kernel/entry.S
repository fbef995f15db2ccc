/*
 * PVH entry, the switch to long mode, and the static tables it needs.
 *
 * The PVH boot protocol (Xen docs/misc/pvh.pandoc, include/public/arch-x86/hvm/start_info.h):
 * the loader enters XEN_ELFNOTE_PHYS32_ENTRY in 32-bit protected mode, paging off, with flat
 * CS/DS and %ebx = physical address of struct hvm_start_info. Ring-0 code runs in KVM's
 * instruction emulator on these machines, so everything that can be static is: the GDT and the
 * page tables are assembled, not built at run time.
 */
#include "layout.h"

#define CR0_PE   0x00000001
#define CR0_PG   0x80000000
#define CR4_PAE  0x00000020
#define MSR_EFER 0xc0000080
#define EFER_LME 0x00000100

/* XEN_ELFNOTE_PHYS32_ENTRY (Xen include/public/elfnote.h): type 18, owner "Xen". */
	.section .note.Xen, "a", @note
	.balign 4
	.long 4          /* namesz */
	.long 4          /* descsz */
	.long 18         /* type */
	.asciz "Xen"
	.long _start32   /* desc: the 32-bit physical entry */

	.section .text.boot, "ax"
	.code32
	.globl _start32
_start32:
	cli
	movl %ebx, start_info_pa
	lgdt gdt_ptr
	ljmp $SEL_KCODE32, $1f
1:	movl $SEL_KDATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	xorl %esi, %esi          /* %esi = 0: the boot CPU */
	jmp enter_long_mode

/* The AP trampoline (trampoline.S) jumps here in 32-bit protected mode. */
	.globl ap_start32
ap_start32:
	movl $SEL_KDATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl $1, %esi            /* %esi = 1: an application processor */

/* Long mode (Intel SDM Vol. 3A 9.8.5): PAE, CR3, EFER.LME, then paging. */
enter_long_mode:
	movl %cr4, %eax
	orl $CR4_PAE, %eax
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr
	movl %cr0, %eax
	orl $(CR0_PG | CR0_PE), %eax
	movl %eax, %cr0
	ljmp $SEL_KCODE, $long_mode

	.code64
long_mode:
	movl $SEL_KDATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	xorl %eax, %eax
	movl %eax, %fs
	movl %eax, %gs
	testl %esi, %esi
	jnz 2f
	/* Boot CPU: APIC id 0, the first kernel stack. */
	leaq kstacks + KSTACK_SIZE(%rip), %rsp
	movl start_info_pa(%rip), %edi
	call kmain
	jmp halt_forever
2:	/* AP: its stack is picked by its APIC id (LAPIC ID register, bits 31:24). */
	movl $0xfee00020, %ecx
	movl (%rcx), %edi
	shrl $24, %edi
	leal 1(%edi), %eax
	shll $12, %eax           /* (id + 1) * KSTACK_SIZE */
	leaq kstacks(%rip), %rsp
	addq %rax, %rsp
	call ap_main
halt_forever:
	cli
	hlt
	jmp halt_forever

	.section .data
	.balign 8
	.globl start_info_pa
start_info_pa:
	.long 0

/* The GDT: selectors in layout.h; TSS descriptors are filled per CPU by cpu.c. */
	.balign 16
	.globl gdt
gdt:
	.quad 0
	.quad 0x00af9a000000ffff /* 0x08 kernel code, 64-bit */
	.quad 0x00cf92000000ffff /* 0x10 kernel data */
	.quad 0x00cffa000000ffff /* 0x18 user code, 32-bit (unused) */
	.quad 0x00cff2000000ffff /* 0x20 user data */
	.quad 0x00affa000000ffff /* 0x28 user code, 64-bit */
	.quad 0x00cf9a000000ffff /* 0x30 kernel code, 32-bit */
	.fill 2 * MAX_CPUS, 8, 0 /* 0x38.. one 16-byte TSS descriptor per CPU */
gdt_end:
	.globl gdt_ptr
gdt_ptr:
	.word gdt_end - gdt - 1
	.quad gdt

/*
 * Page tables: the first 4 GiB identity-mapped with 2 MiB pages, user-accessible (the ring-3
 * workloads read the command line and write the stats area in place). The top 32 MiB (LAPIC)
 * is uncached.
 */
#define PTE_P   0x001
#define PTE_W   0x002
#define PTE_U   0x004
#define PTE_PWT 0x008
#define PTE_PCD 0x010
#define PTE_PS  0x080
	.section .data.pagetables, "aw"
	.balign 4096
pml4:
	.quad pdpt + (PTE_P | PTE_W | PTE_U)
	.fill 511, 8, 0
pdpt:
	.quad pd + 0x0000 + (PTE_P | PTE_W | PTE_U)
	.quad pd + 0x1000 + (PTE_P | PTE_W | PTE_U)
	.quad pd + 0x2000 + (PTE_P | PTE_W | PTE_U)
	.quad pd + 0x3000 + (PTE_P | PTE_W | PTE_U)
	.fill 508, 8, 0
pd:
	.set page, 0
	.rept 2048
	.if page >= 2032
	.quad (page << 21) | (PTE_P | PTE_W | PTE_U | PTE_PS | PTE_PWT | PTE_PCD)
	.else
	.quad (page << 21) | (PTE_P | PTE_W | PTE_U | PTE_PS)
	.endif
	.set page, page + 1
	.endr

	.section .note.GNU-stack, "", @progbits
