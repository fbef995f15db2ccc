/**
 * The struct layouts in src/kvm/structs.ts against the host kernel's own headers: a tiny C
 * program prints sizeof/offsetof of every field we use.
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import {
  KVM_CPUID2,
  KVM_CPUID_ENTRY2,
  KVM_DTABLE,
  KVM_REGS_FIELDS,
  KVM_REGS_SIZE,
  KVM_RUN,
  KVM_SEGMENT,
  KVM_SREGS,
  KVM_USERSPACE_MEMORY_REGION,
} from "../src/kvm/structs.ts";
import { KVM } from "../src/kvm/constants.ts";
import { compileAndRun } from "./helpers/cc.ts";
import { test } from "./helpers/deadline.ts";

test("kvm struct layouts match <linux/kvm.h>", async () => {
  const checks: Array<[string, string, number]> = [];
  const off = (type: string, field: string, value: number) =>
    checks.push([`${type}.${field}`, `offsetof(struct ${type}, ${field})`, value]);
  const size = (type: string, value: number) =>
    checks.push([`sizeof ${type}`, `sizeof(struct ${type})`, value]);

  off("kvm_run", "request_interrupt_window", KVM_RUN.request_interrupt_window);
  off("kvm_run", "immediate_exit", KVM_RUN.immediate_exit);
  off("kvm_run", "exit_reason", KVM_RUN.exit_reason);
  off("kvm_run", "ready_for_interrupt_injection", KVM_RUN.ready_for_interrupt_injection);
  off("kvm_run", "if_flag", KVM_RUN.if_flag);
  off("kvm_run", "flags", KVM_RUN.flags);
  off("kvm_run", "cr8", KVM_RUN.cr8);
  off("kvm_run", "apic_base", KVM_RUN.apic_base);
  off("kvm_run", "io.direction", KVM_RUN.io_direction);
  off("kvm_run", "io.size", KVM_RUN.io_size);
  off("kvm_run", "io.port", KVM_RUN.io_port);
  off("kvm_run", "io.count", KVM_RUN.io_count);
  off("kvm_run", "io.data_offset", KVM_RUN.io_data_offset);
  off("kvm_run", "mmio.phys_addr", KVM_RUN.mmio_phys_addr);
  off("kvm_run", "mmio.data", KVM_RUN.mmio_data);
  off("kvm_run", "mmio.len", KVM_RUN.mmio_len);
  off("kvm_run", "mmio.is_write", KVM_RUN.mmio_is_write);
  off("kvm_run", "fail_entry.hardware_entry_failure_reason", KVM_RUN.fail_entry_reason);
  off("kvm_run", "fail_entry.cpu", KVM_RUN.fail_entry_cpu);
  off("kvm_run", "internal.suberror", KVM_RUN.internal_suberror);
  off("kvm_run", "internal.ndata", KVM_RUN.internal_ndata);
  off("kvm_run", "internal.data", KVM_RUN.internal_data);
  off("kvm_run", "ex.exception", KVM_RUN.ex_exception);
  off("kvm_run", "ex.error_code", KVM_RUN.ex_error_code);
  size("kvm_regs", KVM_REGS_SIZE);
  KVM_REGS_FIELDS.forEach((f, i) => off("kvm_regs", f, i * 8));
  size("kvm_segment", KVM_SEGMENT.size);
  for (const [f, v] of Object.entries(KVM_SEGMENT)) if (f !== "size") off("kvm_segment", f, v);
  size("kvm_dtable", KVM_DTABLE.size);
  off("kvm_dtable", "base", KVM_DTABLE.base);
  off("kvm_dtable", "limit", KVM_DTABLE.limit);
  size("kvm_sregs", KVM_SREGS.size);
  for (const [f, v] of Object.entries(KVM_SREGS)) if (f !== "size") off("kvm_sregs", f, v);
  size("kvm_userspace_memory_region", KVM_USERSPACE_MEMORY_REGION.size);
  for (const [f, v] of Object.entries(KVM_USERSPACE_MEMORY_REGION)) {
    if (f !== "size") off("kvm_userspace_memory_region", f, v);
  }
  size("kvm_cpuid2", KVM_CPUID2.size);
  off("kvm_cpuid2", "nent", KVM_CPUID2.nent);
  off("kvm_cpuid2", "entries", KVM_CPUID2.entries);
  size("kvm_cpuid_entry2", KVM_CPUID_ENTRY2.size);
  for (const [f, v] of Object.entries(KVM_CPUID_ENTRY2)) {
    if (f !== "size") off("kvm_cpuid_entry2", f, v);
  }
  // ioctl numbers too: the kernel's macros against our encoding.
  const ioctls: Array<[string, bigint]> = Object.entries(KVM).map(([k, v]) => [`KVM_${k}`, v]);

  const program = `#include <stdio.h>
#include <stddef.h>
#include <linux/kvm.h>
int main(void) {
${
    checks.map(([name, expr]) => `  printf("%s %lu\\n", "${name}", (unsigned long)(${expr}));`)
      .join("\n")
  }
${ioctls.map(([name]) => `  printf("%s %lu\\n", "${name}", (unsigned long)(${name}));`).join("\n")}
  return 0;
}
`;
  const out = await compileAndRun(program);
  const actual = new Map(
    out.trim().split("\n").map((l) => {
      const i = l.lastIndexOf(" ");
      return [l.slice(0, i), BigInt(l.slice(i + 1))] as const;
    }),
  );
  for (const [name, , expected] of checks) {
    assertEquals(Number(actual.get(name)), expected, name);
  }
  for (const [name, value] of ioctls) assertEquals(actual.get(name), value, name);
});
