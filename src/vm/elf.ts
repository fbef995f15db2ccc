/**
 * A small ELF64 reader: the program headers to load and the PVH entry point from the
 * `XEN_ELFNOTE_PHYS32_ENTRY` note (Xen `include/public/elfnote.h`: type 18, owner "Xen"),
 * which is how a PVH kernel (ours, or Linux with CONFIG_PVH) says where its 32-bit entry is.
 *
 * Reference: the System V ABI ELF-64 object file format (ELF header, program headers,
 * PT_LOAD, PT_NOTE).
 *
 * @module
 */

/** A loadable segment (`PT_LOAD`). */
export interface LoadSegment {
  /** File offset of the bytes. */
  offset: number;
  /** Guest-physical load address (`p_paddr`). */
  paddr: number;
  /** Bytes present in the file. */
  fileSize: number;
  /** Bytes in memory (the rest is zero: .bss). */
  memSize: number;
}

/** What the loader needs from a kernel image. */
export interface ElfImage {
  /** The ELF entry point (`e_entry`). */
  entry: number;
  /** The 32-bit PVH entry point, when the image has the note. */
  pvhEntry?: number;
  /** Segments to load. */
  segments: LoadSegment[];
}

/** A kernel image the loader cannot use; the message says why. */
export class ElfError extends Error {
  /**
   * Creates the error.
   * @param message what is wrong with the image
   */
  constructor(message: string) {
    super(message);
    this.name = "ElfError";
  }
}

const PT_LOAD = 1;
const PT_NOTE = 4;
const XEN_ELFNOTE_PHYS32_ENTRY = 18;
const EM_X86_64 = 62;

/** Parses an ELF64 x86-64 executable. Throws {@linkcode ElfError} naming the problem. */
export function parseElf(data: Uint8Array, name = "kernel"): ElfImage {
  if (
    data.length < 64 || data[0] !== 0x7f || data[1] !== 0x45 || data[2] !== 0x4c ||
    data[3] !== 0x46
  ) {
    throw new ElfError(`${name} is not an ELF file (no \\x7fELF magic)`);
  }
  if (data[4] !== 2) throw new ElfError(`${name} is not a 64-bit ELF (EI_CLASS ${data[4]})`);
  if (data[5] !== 1) throw new ElfError(`${name} is not little-endian`);
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const machine = dv.getUint16(18, true);
  if (machine !== EM_X86_64) throw new ElfError(`${name} is not for x86-64 (e_machine ${machine})`);
  const entry = Number(dv.getBigUint64(24, true));
  const phoff = Number(dv.getBigUint64(32, true));
  const phentsize = dv.getUint16(54, true);
  const phnum = dv.getUint16(56, true);
  if (phentsize < 56 || phoff + phnum * phentsize > data.length) {
    throw new ElfError(`${name} has a truncated program header table`);
  }
  const segments: LoadSegment[] = [];
  let pvhEntry: number | undefined;
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * phentsize;
    const type = dv.getUint32(o, true);
    const offset = Number(dv.getBigUint64(o + 8, true));
    const paddr = Number(dv.getBigUint64(o + 24, true));
    const fileSize = Number(dv.getBigUint64(o + 32, true));
    const memSize = Number(dv.getBigUint64(o + 40, true));
    if (offset + fileSize > data.length) {
      throw new ElfError(`${name}: segment ${i} extends past the end of the file`);
    }
    if (type === PT_LOAD && memSize > 0) {
      if (fileSize > memSize) throw new ElfError(`${name}: segment ${i} has filesz > memsz`);
      segments.push({ offset, paddr, fileSize, memSize });
    } else if (type === PT_NOTE) {
      pvhEntry ??= findPvhNote(dv, offset, fileSize);
    }
  }
  if (segments.length === 0) throw new ElfError(`${name} has no loadable segment`);
  return { entry, pvhEntry, segments };
}

function findPvhNote(dv: DataView, start: number, size: number): number | undefined {
  let o = start;
  const end = start + size;
  // Not `(n + 3) & ~3`: the sizes are 32-bit unsigned, and JavaScript's bitwise operators would
  // wrap a size near 2^32 to a small or negative one (a name "ending" before it starts).
  const align4 = (n: number) => Math.ceil(n / 4) * 4;
  while (o + 12 <= end) {
    const namesz = dv.getUint32(o, true);
    const descsz = dv.getUint32(o + 4, true);
    const type = dv.getUint32(o + 8, true);
    const nameStart = o + 12;
    const descStart = nameStart + align4(namesz);
    if (descStart + descsz > end) return undefined;
    const owner = new TextDecoder().decode(
      new Uint8Array(dv.buffer, dv.byteOffset + nameStart, Math.max(0, namesz - 1)),
    );
    if (owner === "Xen" && type === XEN_ELFNOTE_PHYS32_ENTRY && descsz >= 4) {
      // The note holds a 32-bit (or, in some linkers' output, 64-bit) physical address.
      return descsz >= 8 ? Number(dv.getBigUint64(descStart, true)) : dv.getUint32(descStart, true);
    }
    o = descStart + align4(descsz);
  }
  return undefined;
}
