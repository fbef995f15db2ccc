/**
 * Host-side fuzzing of the kernel loader (`src/vm/elf.ts`, `src/vm/pvh.ts`) with fast-check:
 * images built from random structures (segments truncated, overlapping, huge or outside RAM, an
 * entry anywhere, the PVH note missing or malformed, the wrong class, byte order or machine) and
 * byte-level mutations of the real guest kernel. Every image is either loaded, and then fits the
 * VM's RAM with its entry inside a loaded segment, or refused with an {@linkcode ElfError}:
 * never another exception.
 *
 * @module
 */
// deno-lint-ignore no-import-prefix
import fc from "npm:fast-check@^4";
import { ElfError, parseElf } from "../src/vm/elf.ts";
import { loadPvhKernel } from "../src/vm/pvh.ts";
import { GuestMemory } from "../src/vm/memory.ts";

/** A segment of a generated image. */
interface SegSpec {
  type: number;
  paddr: bigint;
  fileSize: number;
  memSize: bigint;
  /** Override of the file offset (else where its bytes are). */
  offset?: bigint;
}

/** A generated image's structure. */
interface ElfSpec {
  cls: number;
  endian: number;
  machine: number;
  entry: bigint;
  segments: SegSpec[];
  /** The PVH note: entry, its size (4 or 8), owner; null for none. */
  note: { entry: bigint; size: number; owner: string; type: number; namesz?: number } | null;
  phentsize: number;
  truncate: number | null;
}

const MIB = 1n << 20n;

/** Builds the bytes of `s`: header, program headers, a note, then each segment's bytes. */
export function buildElf(s: ElfSpec): Uint8Array {
  const phoff = 64;
  const phnum = s.segments.length + (s.note ? 1 : 0);
  const noteOff = phoff + phnum * Math.max(56, s.phentsize);
  const owner = s.note ? new TextEncoder().encode(s.note.owner + "\0") : new Uint8Array();
  const noteLen = s.note ? 12 + ((owner.length + 3) & ~3) + s.note.size : 0;
  let dataOff = noteOff + noteLen;
  const total = dataOff + s.segments.reduce((n, g) => n + g.fileSize, 0);
  const b = new Uint8Array(total);
  const dv = new DataView(b.buffer);
  b.set([0x7f, 0x45, 0x4c, 0x46, s.cls, s.endian, 1]);
  dv.setUint16(16, 2, true); // ET_EXEC
  dv.setUint16(18, s.machine, true);
  dv.setBigUint64(24, s.entry, true);
  dv.setBigUint64(32, BigInt(phoff), true);
  dv.setUint16(54, s.phentsize, true);
  dv.setUint16(56, phnum, true);
  let ph = phoff;
  for (const g of s.segments) {
    dv.setUint32(ph, g.type, true);
    dv.setBigUint64(ph + 8, g.offset ?? BigInt(dataOff), true);
    dv.setBigUint64(ph + 16, g.paddr, true);
    dv.setBigUint64(ph + 24, g.paddr, true);
    dv.setBigUint64(ph + 32, BigInt(g.fileSize), true);
    dv.setBigUint64(ph + 40, g.memSize, true);
    b.fill(0x90, dataOff, dataOff + g.fileSize);
    dataOff += g.fileSize;
    ph += Math.max(56, s.phentsize);
  }
  if (s.note) {
    dv.setUint32(ph, 4, true); // PT_NOTE
    dv.setBigUint64(ph + 8, BigInt(noteOff), true);
    dv.setBigUint64(ph + 32, BigInt(noteLen), true);
    dv.setUint32(noteOff, s.note.namesz ?? owner.length, true);
    dv.setUint32(noteOff + 4, s.note.size, true);
    dv.setUint32(noteOff + 8, s.note.type, true);
    b.set(owner, noteOff + 12);
    const desc = noteOff + 12 + ((owner.length + 3) & ~3);
    if (s.note.size === 8) dv.setBigUint64(desc, s.note.entry, true);
    else if (s.note.size === 4) dv.setUint32(desc, Number(s.note.entry & 0xffffffffn), true);
    else if (s.note.size === 2) dv.setUint16(desc, Number(s.note.entry & 0xffffn), true);
  }
  return s.truncate === null ? b : b.subarray(0, Math.min(b.length, s.truncate));
}

/** Addresses a loader must think about: RAM's edges, the low hole, 32- and 64-bit extremes. */
function address(memBytes: number): fc.Arbitrary<bigint> {
  const mem = BigInt(memBytes);
  return fc.oneof(
    fc.bigInt({ min: MIB, max: mem - 1n }),
    fc.constantFrom(0n, 0x1000n, MIB - 1n, MIB, mem - 1n, mem, mem + 1n, 1n << 32n),
    fc.constantFrom((1n << 53n) + 1n, (1n << 63n) - 1n, 1n << 63n, (1n << 64n) - 1n),
    fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  );
}

/** Random image structures around a valid one. */
export function elfSpec(memBytes: number): fc.Arbitrary<ElfSpec> {
  const seg = fc.record({
    type: fc.constantFrom(1, 1, 1, 0, 2, 4, 6, 0x6474e551),
    paddr: address(memBytes),
    fileSize: fc.nat({ max: 300 }),
    memSize: fc.oneof(
      fc.bigInt({ min: 0n, max: 4096n }),
      fc.constantFrom(0n, BigInt(memBytes), (1n << 63n) + 5n, (1n << 64n) - 1n),
    ),
    offset: fc.option(
      fc.oneof(fc.bigInt({ min: 0n, max: 2000n }), fc.constantFrom((1n << 64n) - 1n, 1n << 53n)),
      { nil: undefined },
    ),
  });
  return fc.record({
    cls: fc.constantFrom(2, 2, 2, 1, 0, 3),
    endian: fc.constantFrom(1, 1, 1, 2, 0),
    machine: fc.constantFrom(62, 62, 62, 3, 40, 183, 0),
    entry: address(memBytes),
    segments: fc.array(seg, { maxLength: 5 }),
    note: fc.option(
      fc.record({
        entry: address(memBytes),
        size: fc.constantFrom(4, 8, 8, 0, 2),
        owner: fc.constantFrom("Xen", "Xen", "GNU", "Xe", ""),
        type: fc.constantFrom(18, 18, 18, 1, 17),
        namesz: fc.option(fc.constantFrom(0, 1, 3, 0x7ffffff0, 0xfffffff0, 0xffffffff), {
          nil: undefined,
        }),
      }),
      { nil: null },
    ),
    phentsize: fc.constantFrom(56, 56, 56, 0, 55, 64),
    truncate: fc.option(fc.nat({ max: 1200 }), { nil: null }),
  });
}

/** Byte-level mutations of a real image: truncations, flips, overwritten words. */
export function mutatedImage(base: Uint8Array): fc.Arbitrary<Uint8Array> {
  const edit = fc.record({
    at: fc.nat({ max: Math.min(base.length - 1, 4095) }),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }),
  });
  return fc.record({
    edits: fc.array(edit, { minLength: 1, maxLength: 6 }),
    truncate: fc.option(fc.nat({ max: base.length }), { nil: null }),
  }).map(({ edits, truncate }) => {
    const b = base.slice(0, truncate ?? base.length);
    for (const e of edits) if (e.at < b.length) b.set(e.bytes.subarray(0, b.length - e.at), e.at);
    return b;
  });
}

/** What one image did: loaded, or refused with an ElfError (anything else throws). */
export function loadOrRefuse(image: Uint8Array, memory: GuestMemory): "loaded" | "refused" {
  try {
    const k = loadPvhKernel(memory, { image, cmdline: "workload=hello", name: "fuzzed" });
    const elf = parseElf(image, "fuzzed");
    const inside = elf.segments.some((s) => k.entry >= s.paddr && k.entry < s.paddr + s.memSize);
    if (!inside) {
      throw new Error(`loaded with entry 0x${k.entry.toString(16)} outside its segments`);
    }
    for (const s of elf.segments) {
      if (s.paddr < 0x100000 || s.paddr + s.memSize > memory.size) {
        throw new Error(`loaded a segment at 0x${s.paddr.toString(16)} outside RAM`);
      }
    }
    return "loaded";
  } catch (e) {
    if (e instanceof ElfError) return "refused";
    throw e;
  }
}

/** Options of {@linkcode fuzzElf}. */
export interface FuzzElfOptions {
  /** Cases of each kind (generated structures, mutated real kernel). */
  numRuns: number;
  /** fast-check seed. */
  seed: number;
  /** The real kernel's bytes. */
  kernel: Uint8Array;
}

/** Runs both properties; returns how many images were loaded and refused. */
export function fuzzElf(o: FuzzElfOptions): { loaded: number; refused: number } {
  const memory = GuestMemory.allocate(16 << 20);
  const counts = { loaded: 0, refused: 0 };
  try {
    fc.assert(
      fc.property(elfSpec(memory.size), (s) => {
        counts[loadOrRefuse(buildElf(s), memory)]++;
      }),
      { numRuns: o.numRuns, seed: o.seed },
    );
    fc.assert(
      fc.property(mutatedImage(o.kernel), (image) => {
        counts[loadOrRefuse(image, memory)]++;
      }),
      { numRuns: o.numRuns, seed: o.seed + 1 },
    );
  } finally {
    memory.free();
  }
  return counts;
}
