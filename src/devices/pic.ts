/**
 * The legacy 8259A PIC pair, as a machine without one wired up looks: deno-vmm delivers every
 * interrupt through the local APIC, so the PICs only keep their interrupt mask registers (a
 * guest masks them at boot, as ours does and as any kernel that uses the APIC does). Command
 * words are accepted and ignored; reads return the mask (OCW1, Intel 8259A datasheet).
 *
 * @module
 */

/** Master PIC command/data ports. */
export const PIC_MASTER = 0x20;
/** Slave PIC command/data ports. */
export const PIC_SLAVE = 0xa0;

/** Both PICs' mask registers. */
export class LegacyPic {
  #mask = [0xff, 0xff];

  /** Whether `port` belongs to the PICs. */
  static decodes(port: number): boolean {
    return port === PIC_MASTER || port === PIC_MASTER + 1 || port === PIC_SLAVE ||
      port === PIC_SLAVE + 1;
  }

  /** A byte written to `port`: the data port sets the mask, the command port is ignored. */
  write(port: number, value: number): void {
    if (port & 1) this.#mask[port === PIC_MASTER + 1 ? 0 : 1] = value & 0xff;
  }

  /** A byte read from `port`: the mask from the data port, 0 (no IRR/ISR) from the command port. */
  read(port: number): number {
    return port & 1 ? this.#mask[port === PIC_MASTER + 1 ? 0 : 1] : 0;
  }
}
