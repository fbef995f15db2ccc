/**
 * A 16550A UART, transmit side, as the console on COM1 (ports 0x3F8..0x3FF).
 *
 * Output is line-buffered and handed to `onLine` one line at a time; nothing is ever
 * received, so reads report an empty receiver and an always-ready transmitter.
 * Reference: the National Semiconductor PC16550D data sheet (register map, LSR bits).
 *
 * @module
 */

/** COM1's base port. */
export const COM1_BASE = 0x3f8;

const LSR_THRE = 0x20; // transmit holding register empty
const LSR_TEMT = 0x40; // transmitter empty
const LCR_DLAB = 0x80; // divisor latch access

/** Longest line kept before it is flushed without a newline. */
const MAX_LINE = 4096;

/** The transmit side of a 16550A. */
export class Uart16550 {
  #onLine: (line: string) => void;
  #buf = new Uint8Array(MAX_LINE);
  #len = 0;
  #ier = 0;
  #lcr = 0x03;
  #mcr = 0;
  #scr = 0;
  #dll = 1;
  #dlm = 0;

  /** @param onLine receives each complete line, without its newline */
  constructor(onLine: (line: string) => void) {
    this.#onLine = onLine;
  }

  /** A port read at `offset` (0..7) from the base. */
  read(offset: number): number {
    const dlab = (this.#lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case 0:
        return dlab ? this.#dll : 0; // RBR: nothing received
      case 1:
        return dlab ? this.#dlm : this.#ier;
      case 2:
        return 0xc1; // IIR: no interrupt pending, FIFOs enabled
      case 3:
        return this.#lcr;
      case 4:
        return this.#mcr;
      case 5:
        return LSR_THRE | LSR_TEMT;
      case 6:
        return 0xb0; // MSR: DCD, DSR, CTS
      case 7:
        return this.#scr;
    }
    return 0xff;
  }

  /** A port write at `offset` (0..7) from the base. */
  write(offset: number, value: number): void {
    const dlab = (this.#lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case 0:
        if (dlab) this.#dll = value;
        else this.#putByte(value & 0xff);
        return;
      case 1:
        if (dlab) this.#dlm = value;
        else this.#ier = value & 0x0f;
        return;
      case 3:
        this.#lcr = value;
        return;
      case 4:
        this.#mcr = value;
        return;
      case 7:
        this.#scr = value;
        return;
    }
  }

  /** Hands out a partial line still buffered (at VM stop). */
  flush(): void {
    if (this.#len > 0) this.#emit();
  }

  #putByte(b: number): void {
    if (b === 0x0a) {
      this.#emit();
      return;
    }
    if (b === 0x0d) return;
    this.#buf[this.#len++] = b;
    if (this.#len === MAX_LINE) this.#emit();
  }

  #emit(): void {
    const line = new TextDecoder().decode(this.#buf.subarray(0, this.#len));
    this.#len = 0;
    this.#onLine(line);
  }
}
