/**
 * Messages between the main thread and an EMT worker. Control after start goes through
 * shared memory (the VM's mailboxes and the shim's wake/poke), never through these: an EMT
 * in its run loop does not read messages.
 *
 * @module
 */

/** How a vCPU starts. */
export type VcpuStart =
  | { kind: "pvh" } // registers already set by the loader (the boot vCPU)
  | { kind: "wait-for-sipi" }; // an application processor

/** What to do with an access no device claims. */
export type UnhandledAccessPolicy = "ignore" | "stop";

/** The one message the main thread sends: everything the EMT needs. */
export interface EmtInit {
  /** Discriminator. */
  type: "init";
  /** VM name, for messages. */
  vmName: string;
  /** vCPU index (= APIC id). */
  vcpu: number;
  /** vCPUs in the VM. */
  vcpus: number;
  /** The vCPU fd. */
  vcpuFd: number;
  /** Size of the `kvm_run` mapping. */
  runMmapSize: number;
  /** Path of the built shim library. */
  shimPath: string;
  /** The VM's EMT blocks (one `EMT_BLOCK_SIZE` block per vCPU). */
  emtBlocks: SharedArrayBuffer;
  /** The VMM-wide shim block. */
  globalBlock: SharedArrayBuffer;
  /** The VM's mailboxes. */
  mailboxes: SharedArrayBuffer;
  /** How this vCPU starts. */
  start: VcpuStart;
  /** Unhandled port / MMIO accesses: log and ignore, or stop the VM. */
  unhandled: UnhandledAccessPolicy;
  /** Halt polling: spin this long before sleeping (0: none). */
  haltPollNs: number;
  /** Without a scheduler: a run deadline this long after each slice's start (0: none). */
  runSliceNs?: number;
  /**
   * Set when a scheduler enforces slots: the VM's grant table, the VMM's doorbell and its
   * hand-off table (`dispatch_table.ts`).
   */
  sched?: {
    table: SharedArrayBuffer;
    doorbell: SharedArrayBuffer;
    dispatch?: SharedArrayBuffer;
  };
  /** The echo device's channel, when the guest runs the `echo` workload. */
  echo?: SharedArrayBuffer;
}

/** An error that stopped the VM, as an EMT reports it. */
export interface VcpuFault {
  /** Short reason: "triple fault", "KVM emulation failure", ... */
  reason: string;
  /** Guest rip at the time, when it could be read. */
  rip?: string;
  /** The full message, naming VM, vCPU, rip and reason. */
  message: string;
}

/** Messages an EMT sends. */
export type EmtMessage =
  | { type: "ready"; vcpu: number }
  | { type: "console"; vcpu: number; line: string; time: number }
  | { type: "log"; vcpu: number; message: string }
  | { type: "exit"; vcpu: number; status: number }
  | { type: "fault"; vcpu: number; fault: VcpuFault }
  | { type: "stopped"; vcpu: number };
