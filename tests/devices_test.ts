/** The UART's line buffering and the ELF/PVH and --vm parsers. */
import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { Uart16550 } from "../src/devices/uart.ts";
import { parseElf } from "../src/vm/elf.ts";
import { parseVmSpec } from "../src/cli/vm_spec.ts";

Deno.test("UART hands out whole lines, drops CR, reports an empty transmitter", () => {
  const lines: string[] = [];
  const u = new Uart16550((l) => lines.push(l));
  for (const ch of "ab\r\ncd\n") u.write(0, ch.charCodeAt(0));
  u.write(0, "e".charCodeAt(0));
  assertEquals(lines, ["ab", "cd"]);
  u.flush();
  assertEquals(lines, ["ab", "cd", "e"]);
  assertEquals(u.read(5) & 0x60, 0x60);
  u.write(3, 0x80); // DLAB: offset 0 is now the divisor latch, not output
  u.write(0, 0x0c);
  assertEquals(u.read(0), 0x0c);
  assertEquals(lines.length, 3);
});

Deno.test("parseElf rejects non-ELF, 32-bit and non-x86-64 images by name", () => {
  throws(() => parseElf(new TextEncoder().encode("hello"), "k"), /k is not an ELF file/);
  const elf32 = new Uint8Array(64);
  elf32.set([0x7f, 0x45, 0x4c, 0x46, 1, 1]);
  throws(() => parseElf(elf32, "k"), /k is not a 64-bit ELF/);
  const arm = new Uint8Array(64);
  arm.set([0x7f, 0x45, 0x4c, 0x46, 2, 1]);
  arm[18] = 183; // EM_AARCH64
  throws(() => parseElf(arm, "k"), /k is not for x86-64/);
});

Deno.test("parseVmSpec: values may hold '=' and spaces; unknown keys are named", () => {
  assertEquals(parseVmSpec("name=a,vcpus=2,cmdline=workload=spin seconds=1", 0), {
    name: "a",
    vcpus: 2,
    cmdline: "workload=spin seconds=1",
  });
  assertEquals(parseVmSpec("vcpus=1", 3).name, "vm3");
  throws(() => parseVmSpec("name=a,cpus=2", 0), /unknown key 'cpus'/);
  throws(() => parseVmSpec("name=a,memory=lots", 0), /memory must be a number/);
});
