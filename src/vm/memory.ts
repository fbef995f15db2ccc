/**
 * Guest physical memory: one anonymous mapping registered with KVM as memory slot 0 at
 * guest-physical 0, viewed from JavaScript without copies.
 *
 * @module
 */
import { mmap, munmap } from "../kvm/libc.ts";
import type { VmFd } from "../kvm/kvm.ts";

/** Guest RAM. */
export class GuestMemory {
  /** Size in bytes. */
  readonly size: number;
  /** Host address of guest-physical 0. */
  readonly hostAddress: bigint;
  /** The whole of guest RAM as bytes (guest-physical address = index). */
  readonly bytes: Uint8Array;
  /** The same memory as a DataView. */
  readonly view: DataView;
  #pointer: Deno.PointerObject | null;

  private constructor(size: number, pointer: Deno.PointerObject) {
    this.size = size;
    this.#pointer = pointer;
    this.hostAddress = Deno.UnsafePointer.value(pointer) as bigint;
    const buf = Deno.UnsafePointerView.getArrayBuffer(pointer, size);
    this.bytes = new Uint8Array(buf);
    this.view = new DataView(buf);
  }

  /** Maps `size` bytes of zeroed memory (not yet given to a VM). */
  static allocate(size: number): GuestMemory {
    return new GuestMemory(size, mmap(size));
  }

  /** Registers this memory with a VM as slot 0 at guest-physical 0. */
  attach(vm: VmFd): void {
    vm.setUserMemoryRegion({
      slot: 0,
      guestPhysAddr: 0,
      size: this.size,
      userspaceAddr: this.hostAddress,
    });
  }

  /** Throws a RangeError unless `[gpa, gpa + length)` lies inside guest RAM. */
  check(gpa: number, length: number): void {
    if (gpa < 0 || length < 0 || gpa + length > this.size) {
      throw new RangeError(
        `guest range 0x${gpa.toString(16)}+0x${length.toString(16)} is outside ` +
          `guest RAM (0x${this.size.toString(16)} bytes)`,
      );
    }
  }

  /** Copies `data` to guest-physical `gpa`. */
  write(gpa: number, data: Uint8Array): void {
    this.check(gpa, data.length);
    this.bytes.set(data, gpa);
  }

  /** Writes a NUL-terminated string at `gpa`. */
  writeCString(gpa: number, text: string): number {
    const data = new TextEncoder().encode(text + "\0");
    this.write(gpa, data);
    return data.length;
  }

  /** Unmaps the memory. The VM using it must be closed first. */
  free(): void {
    if (this.#pointer) munmap(this.#pointer, this.size);
    this.#pointer = null;
  }
}
