/**
 * Loading a PVH kernel: its ELF segments into guest memory, and the `hvm_start_info`
 * structure, memory map and command line it finds through EBX.
 *
 * Reference: Xen `include/public/arch-x86/hvm/start_info.h` (struct hvm_start_info, version
 * 1 with the memory map; struct hvm_memmap_table_entry; magic 0x336ec578) and the E820 type
 * numbers it reuses. Addresses are those of `guests/ABI.md`.
 *
 * @module
 */
import { ElfError, parseElf } from "./elf.ts";
import type { GuestMemory } from "./memory.ts";

/** `XEN_HVM_START_MAGIC_VALUE`. */
export const HVM_START_MAGIC = 0x336ec578;
/** Where the host writes `hvm_start_info`. */
export const START_INFO_ADDR = 0x1000;
/** Where the host writes the memory map. */
export const MEMMAP_ADDR = 0x2000;
/** Where the host writes the command line. */
export const CMDLINE_ADDR = 0x3000;
/** Longest command line (including its NUL). */
export const CMDLINE_MAX = 0x1000;
/** The smallest guest RAM deno-vmm accepts. */
export const MIN_MEMORY = 2 << 20;
/** Start of the legacy hole (EBDA, VGA, ROMs) left out of the RAM map. */
const LOW_RAM_END = 0x9fc00;
const HIGH_RAM_START = 0x100000;
const E820_RAM = 1;
const E820_RESERVED = 2;

/** The result of loading a kernel. */
export interface LoadedKernel {
  /** The 32-bit PVH entry point. */
  entry: number;
  /** Guest-physical address of `hvm_start_info` (EBX at entry). */
  startInfo: number;
  /** First byte past the highest loaded segment. */
  end: number;
}

/**
 * Loads the ELF `image` into `memory` and writes the PVH start info with `cmdline`.
 * Throws {@linkcode ElfError} for an unusable image (naming it by `name`).
 */
export function loadPvhKernel(
  memory: GuestMemory,
  options: { image: Uint8Array; cmdline: string; name: string },
): LoadedKernel {
  const { image, cmdline, name } = options;
  const elf = parseElf(image, name);
  if (elf.pvhEntry === undefined) {
    throw new ElfError(
      `${name} has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): deno-vmm boots kernels ` +
        `through the PVH protocol (Linux: CONFIG_PVH=y)`,
    );
  }
  let end = 0;
  const hex = (n: number) => `0x${n.toString(16)}`;
  // Every check before the first write: a refused image leaves guest memory as it was.
  const sorted = [...elf.segments].sort((a, b) => a.paddr - b.paddr);
  for (const [i, seg] of sorted.entries()) {
    const segEnd = seg.paddr + seg.memSize;
    if (seg.paddr < HIGH_RAM_START || segEnd > memory.size) {
      throw new ElfError(
        `${name}: segment at ${hex(seg.paddr)}..${hex(segEnd)} does not ` +
          `fit guest RAM 0x100000..${hex(memory.size)} (give the VM more memory)`,
      );
    }
    const next = sorted[i + 1];
    if (next && next.paddr < segEnd) {
      throw new ElfError(
        `${name}: segments at ${hex(seg.paddr)}..${hex(segEnd)} and ${hex(next.paddr)}.. overlap`,
      );
    }
  }
  const entry = elf.pvhEntry;
  if (!elf.segments.some((s) => entry >= s.paddr && entry < s.paddr + s.memSize)) {
    throw new ElfError(
      `${name}: the PVH entry point ${hex(entry)} is outside every loaded segment`,
    );
  }
  for (const seg of elf.segments) {
    const segEnd = seg.paddr + seg.memSize;
    memory.write(seg.paddr, image.subarray(seg.offset, seg.offset + seg.fileSize));
    memory.bytes.fill(0, seg.paddr + seg.fileSize, segEnd);
    end = Math.max(end, segEnd);
  }
  const cmdBytes = new TextEncoder().encode(cmdline);
  if (cmdBytes.length + 1 > CMDLINE_MAX) {
    throw new RangeError(`command line is ${cmdBytes.length} bytes; at most ${CMDLINE_MAX - 1}`);
  }
  memory.writeCString(CMDLINE_ADDR, cmdline);

  const map: Array<[number, number, number]> = [
    [0, LOW_RAM_END, E820_RAM],
    [LOW_RAM_END, HIGH_RAM_START - LOW_RAM_END, E820_RESERVED],
    [HIGH_RAM_START, memory.size - HIGH_RAM_START, E820_RAM],
  ];
  const dv = memory.view;
  map.forEach(([addr, size, type], i) => {
    const o = MEMMAP_ADDR + i * 24; // struct hvm_memmap_table_entry
    dv.setBigUint64(o, BigInt(addr), true);
    dv.setBigUint64(o + 8, BigInt(size), true);
    dv.setUint32(o + 16, type, true);
    dv.setUint32(o + 20, 0, true);
  });
  const s = START_INFO_ADDR; // struct hvm_start_info
  memory.bytes.fill(0, s, s + 56);
  dv.setUint32(s + 0, HVM_START_MAGIC, true);
  dv.setUint32(s + 4, 1, true); // version 1: has the memory map
  dv.setUint32(s + 8, 0, true); // flags
  dv.setUint32(s + 12, 0, true); // nr_modules
  dv.setBigUint64(s + 16, 0n, true); // modlist_paddr
  dv.setBigUint64(s + 24, BigInt(CMDLINE_ADDR), true);
  dv.setBigUint64(s + 32, 0n, true); // rsdp_paddr: no ACPI
  dv.setBigUint64(s + 40, BigInt(MEMMAP_ADDR), true);
  dv.setUint32(s + 48, map.length, true);
  return { entry: elf.pvhEntry, startInfo: START_INFO_ADDR, end };
}
