/**
 * The debug-exit port: the guest writes a status and its VM stops with it.
 *
 * Compatible with QEMU's `isa-debug-exit` device at the same port (`-device
 * isa-debug-exit,iobase=0xf4,iosize=0x04`), where the process exit code becomes
 * `(status << 1) | 1`; here the VM's exit status is the value itself.
 *
 * @module
 */

/** The port our guests use. */
export const DEBUG_EXIT_PORT = 0xf4;
/** Bytes of port space it decodes (as QEMU's iosize=4). */
export const DEBUG_EXIT_SIZE = 4;

/** The debug-exit device. */
export class DebugExit {
  #onExit: (status: number) => void;

  /** @param onExit called with the status the guest wrote */
  constructor(onExit: (status: number) => void) {
    this.#onExit = onExit;
  }

  /** A port write: the VM exits with `value`. */
  write(value: number): void {
    this.#onExit(value >>> 0);
  }
}
