/*
 * The C baseline for bench/exits.ts: the smallest KVM_RUN loop that boots our guest image the
 * way deno-vmm does (PVH entry, hvm_start_info at 0x1000, command line at 0x3000; one vCPU)
 * and handles just what the `portio` workload touches: COM1 to stdout, the bench port, the
 * debug-exit port, the PIC masks and the LAPIC's registers (accepted, ID reads 0).
 *
 * Usage: kvm_loop KERNEL.elf "CMDLINE"    (exit status: the guest's debug-exit status)
 *
 * References: Documentation/virt/kvm/api.rst (KVM_CREATE_VM, KVM_SET_USER_MEMORY_REGION,
 * KVM_RUN and struct kvm_run); Xen include/public/arch-x86/hvm/start_info.h and
 * include/public/elfnote.h (XEN_ELFNOTE_PHYS32_ENTRY = 18).
 */
#include <elf.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MEM_SIZE (64UL << 20)
#define START_INFO 0x1000
#define MEMMAP 0x2000
#define CMDLINE 0x3000

static void die(const char *what) {
	perror(what);
	exit(120);
}

/* Loads the PT_LOAD segments; returns the PVH entry from the PT_NOTE. */
static uint32_t load_elf(const char *path, uint8_t *mem) {
	int fd = open(path, O_RDONLY);
	if (fd < 0) die(path);
	struct stat st;
	fstat(fd, &st);
	uint8_t *img = mmap(0, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (img == MAP_FAILED) die("mmap kernel");
	Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
	uint32_t entry = 0;
	for (int i = 0; i < eh->e_phnum; i++) {
		Elf64_Phdr *ph = (Elf64_Phdr *)(img + eh->e_phoff + i * eh->e_phentsize);
		if (ph->p_type == PT_LOAD) {
			memcpy(mem + ph->p_paddr, img + ph->p_offset, ph->p_filesz);
		} else if (ph->p_type == PT_NOTE) {
			for (uint64_t o = 0; o + 12 <= ph->p_filesz;) {
				Elf64_Nhdr *n = (Elf64_Nhdr *)(img + ph->p_offset + o);
				uint64_t name = o + 12, desc = name + ((n->n_namesz + 3) & ~3UL);
				if (n->n_type == 18 && !memcmp(img + ph->p_offset + name, "Xen", 4))
					entry = *(uint32_t *)(img + ph->p_offset + desc);
				o = desc + ((n->n_descsz + 3) & ~3UL);
			}
		}
	}
	if (!entry) {
		fprintf(stderr, "%s: no PVH note\n", path);
		exit(120);
	}
	return entry;
}

static void start_info(uint8_t *mem, const char *cmdline) {
	uint32_t *si = (uint32_t *)(mem + START_INFO);
	si[0] = 0x336ec578; /* magic */
	si[1] = 1;          /* version */
	*(uint64_t *)(mem + START_INFO + 24) = CMDLINE;
	*(uint64_t *)(mem + START_INFO + 40) = MEMMAP;
	si[12] = 2; /* memmap entries */
	uint64_t *mm = (uint64_t *)(mem + MEMMAP);
	mm[0] = 0, mm[1] = 0xa0000, mm[2] = 1;                  /* addr, size, type RAM */
	mm[3] = 0x100000, mm[4] = MEM_SIZE - 0x100000, mm[5] = 1;
	snprintf((char *)mem + CMDLINE, 4096, "%s", cmdline);
}

static void flat(struct kvm_segment *s, uint16_t sel, uint8_t type) {
	memset(s, 0, sizeof(*s));
	s->limit = 0xffffffff, s->selector = sel, s->type = type;
	s->present = 1, s->db = 1, s->s = 1, s->g = 1;
}

int main(int argc, char **argv) {
	if (argc != 3) {
		fprintf(stderr, "usage: %s KERNEL.elf CMDLINE\n", argv[0]);
		return 2;
	}
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) die("/dev/kvm");
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0) die("KVM_CREATE_VM");
	if (ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000UL) < 0) die("KVM_SET_TSS_ADDR");
	uint8_t *mem = mmap(0, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct kvm_userspace_memory_region region = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE, .userspace_addr = (uint64_t)mem};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
	uint32_t entry = load_elf(argv[1], mem);
	char cmdline[4096];
	snprintf(cmdline, sizeof(cmdline), "%s ncpus=1", argv[2]);
	start_info(mem, cmdline);

	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0) die("KVM_CREATE_VCPU");
	struct {
		struct kvm_cpuid2 c;
		struct kvm_cpuid_entry2 e[256];
	} cpuid = {.c.nent = 256};
	if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &cpuid) < 0) die("KVM_GET_SUPPORTED_CPUID");
	if (ioctl(vcpu, KVM_SET_CPUID2, &cpuid) < 0) die("KVM_SET_CPUID2");
	int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	struct kvm_run *run = mmap(0, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED) die("mmap kvm_run");

	struct kvm_sregs sr;
	ioctl(vcpu, KVM_GET_SREGS, &sr);
	flat(&sr.cs, 0x10, 0xb);
	flat(&sr.ds, 0x18, 0x3);
	sr.es = sr.fs = sr.gs = sr.ss = sr.ds;
	flat(&sr.tr, 0x20, 0xb);
	sr.tr.limit = 0x67, sr.tr.s = 0, sr.tr.db = 0, sr.tr.g = 0;
	sr.cr0 = 0x11, sr.cr4 = 0, sr.efer = 0;
	if (ioctl(vcpu, KVM_SET_SREGS, &sr) < 0) die("KVM_SET_SREGS");
	struct kvm_regs r = {.rip = entry, .rbx = START_INFO, .rflags = 2};
	if (ioctl(vcpu, KVM_SET_REGS, &r) < 0) die("KVM_SET_REGS");

	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
		switch (run->exit_reason) {
		case KVM_EXIT_IO: {
			uint8_t *data = (uint8_t *)run + run->io.data_offset;
			uint16_t port = run->io.port;
			if (run->io.direction == KVM_EXIT_IO_OUT) {
				if (port == 0x3f8) {
					fwrite(data, 1, run->io.count, stdout);
				} else if (port == 0xf4) {
					fflush(stdout);
					return *(uint32_t *)data;
				}
				/* 0xf0 (bench), 0x21/0xa1 (PIC masks), the rest: ignored */
			} else {
				memset(data, port == 0x3fd ? 0x60 : 0xff, run->io.size * run->io.count);
			}
			break;
		}
		case KVM_EXIT_MMIO:
			if (!run->mmio.is_write) memset(run->mmio.data, 0, 8); /* LAPIC ID 0, ... */
			break;
		case KVM_EXIT_HLT:
			fprintf(stderr, "guest halted\n");
			return 121;
		default:
			fprintf(stderr, "exit reason %u\n", run->exit_reason);
			return 122;
		}
	}
}
