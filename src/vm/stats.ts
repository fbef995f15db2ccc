/**
 * The guest's stats area (`guests/ABI.md`, `guests/kernel/stats.h`): counters the ring-3
 * workloads publish with plain stores, read here straight from guest memory, no exit.
 *
 * @module
 */
import type { GuestMemory } from "./memory.ts";

/** Guest-physical address of the stats area. */
export const STATS_ADDR = 0x50000;
/** Its size. */
export const STATS_SIZE = 0x10000;
/** "DVMS" little-endian. */
export const STATS_MAGIC = 0x534d5644;
const RECORD_BASE = 64;
const RECORD_SIZE = 128;

/** One vCPU's published counters. */
export interface VcpuStats {
  /** Workload iterations. */
  iterations: bigint;
  /** Rounds / events (ipi round trips, sleeps, requests). */
  rounds: bigint;
  /** Sum of measured latencies, ns. */
  latencySumNs: bigint;
  /** Largest measured latency, ns. */
  latencyMaxNs: bigint;
  /** Deadline misses. */
  misses: bigint;
  /** TSC at the last update. */
  lastTsc: bigint;
  /** The workload-specific rest of the record (words 6..15). */
  extra: bigint[];
}

/** The whole area, or null before the guest initialised it. */
export interface GuestStats {
  /** vCPUs the guest brought up. */
  vcpusUp: number;
  /** Workload id (index in ABI.md's table). */
  workload: number;
  /** Per-vCPU records. */
  vcpus: VcpuStats[];
}

/** Reads the stats area of `memory` for `vcpus` vCPUs; null until the guest wrote its magic. */
export function readGuestStats(memory: GuestMemory, vcpus: number): GuestStats | null {
  const dv = memory.view;
  if (memory.size < STATS_ADDR + STATS_SIZE) return null;
  if (dv.getUint32(STATS_ADDR, true) !== STATS_MAGIC) return null;
  const out: VcpuStats[] = [];
  for (let i = 0; i < vcpus; i++) {
    const o = STATS_ADDR + RECORD_BASE + i * RECORD_SIZE;
    if (o + RECORD_SIZE > STATS_ADDR + STATS_SIZE) break;
    const w = (k: number) => dv.getBigUint64(o + 8 * k, true);
    out.push({
      iterations: w(0),
      rounds: w(1),
      latencySumNs: w(2),
      latencyMaxNs: w(3),
      misses: w(4),
      lastTsc: w(5),
      extra: Array.from({ length: 10 }, (_, k) => w(6 + k)),
    });
  }
  return {
    vcpusUp: dv.getUint32(STATS_ADDR + 8, true),
    workload: dv.getUint32(STATS_ADDR + 12, true),
    vcpus: out,
  };
}
