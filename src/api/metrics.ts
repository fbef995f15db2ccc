/**
 * `GET /metrics`: the VMM's counters in the Prometheus text exposition format, version 0.0.4
 * (one `# HELP` and one `# TYPE` line per metric family, then `name{label="value"} number`
 * samples; label values escape `\`, `"` and newlines).
 *
 * Per vCPU (labels `vm`, `vcpu`): seconds in guest mode, halted and waiting for a slot (the
 * shim's clocks), KVM_RUN entries, halts, wakes, pokes, and exits by reason (label `reason`,
 * KVM's exit reason name). Per VM: its state and vCPU count. With a scheduler: decisions,
 * ejections, per-slot busy seconds (label `slot`) and the per-vCPU run / wait seconds, grants,
 * preemptions and wake-to-grant latency the scheduler measures.
 *
 * @module
 */
import type { SchedStats } from "../sched/runtime_protocol.ts";
import { exitReasonName } from "../kvm/constants.ts";
import type { Vm, VmState } from "../vm/vm.ts";

/** The `Content-Type` of the text format. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Prefix of every metric name. */
export const METRIC_PREFIX = "deno_vmm_";

const VM_STATES: readonly VmState[] = [
  "created",
  "running",
  "paused",
  "stopping",
  "ended",
  "closed",
];

type Labels = Record<string, string | number>;

/** Escapes a label value (`\` → `\\`, `"` → `\"`, newline → `\n`). */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

/** Collects metric families and renders them. */
class Exposition {
  #families = new Map<string, { help: string; type: string; samples: string[] }>();

  family(name: string, type: "counter" | "gauge", help: string): void {
    if (!this.#families.has(name)) this.#families.set(name, { help, type, samples: [] });
  }

  sample(name: string, labels: Labels, value: number): void {
    const f = this.#families.get(name);
    if (!f) throw new Error(`metric ${name} has no family`);
    const l = Object.entries(labels)
      .map(([k, v]) => `${k}="${escapeLabelValue(String(v))}"`)
      .join(",");
    f.samples.push(`${METRIC_PREFIX}${name}${l ? `{${l}}` : ""} ${formatValue(value)}`);
  }

  render(): string {
    let out = "";
    for (const [name, f] of this.#families) {
      const help = f.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
      out += `# HELP ${METRIC_PREFIX}${name} ${help}\n# TYPE ${METRIC_PREFIX}${name} ${f.type}\n`;
      for (const s of f.samples) out += s + "\n";
    }
    return out;
  }
}

/** What the metrics are taken from. */
export interface MetricsSource {
  /** The VMs. */
  vms: Iterable<Vm>;
  /** The scheduler's statistics, when there is a scheduler. */
  sched?: SchedStats | null;
  /** Most EMTs ever in guest mode at once. */
  guestModeHighWater: number;
}

/** Renders every metric of `src` in the text format 0.0.4. */
export function renderMetrics(src: MetricsSource): string {
  const e = new Exposition();
  e.family("vm_state", "gauge", "1 for the VM's current lifecycle state, 0 for the others.");
  e.family("vm_vcpus", "gauge", "vCPUs of the VM.");
  e.family("vcpu_guest_seconds_total", "counter", "Seconds the vCPU ran in guest mode.");
  e.family("vcpu_halted_seconds_total", "counter", "Seconds the vCPU was halted (guest HLT).");
  e.family(
    "vcpu_wait_seconds_total",
    "counter",
    "Seconds the vCPU's EMT waited for a scheduler grant (a slot).",
  );
  e.family("vcpu_runs_total", "counter", "KVM_RUN entries of the vCPU.");
  e.family("vcpu_halts_total", "counter", "Guest halts of the vCPU.");
  e.family("vcpu_wakes_total", "counter", "Wakes the vCPU's EMT received.");
  e.family("vcpu_pokes_total", "counter", "Pokes that forced the vCPU out of guest mode.");
  e.family("vcpu_exits_total", "counter", "VM exits of the vCPU, by KVM exit reason.");
  const vms = [...src.vms];
  for (const vm of vms) {
    for (const s of VM_STATES) e.sample("vm_state", { vm: vm.name, state: s }, +(vm.state === s));
    e.sample("vm_vcpus", { vm: vm.name }, vm.config.vcpus);
  }
  for (const vm of vms) {
    for (const c of vm.counters()) {
      const l = { vm: vm.name, vcpu: c.vcpu };
      e.sample("vcpu_guest_seconds_total", l, c.nsGuest / 1e9);
      e.sample("vcpu_halted_seconds_total", l, c.nsHalted / 1e9);
      e.sample("vcpu_wait_seconds_total", l, c.nsWaitGrant / 1e9);
      e.sample("vcpu_runs_total", l, c.runs);
      e.sample("vcpu_halts_total", l, c.halts);
      e.sample("vcpu_wakes_total", l, c.wakes);
      e.sample("vcpu_pokes_total", l, c.pokes);
      c.exits.forEach((n, r) => {
        if (n > 0) e.sample("vcpu_exits_total", { ...l, reason: exitReasonName(r) }, n);
      });
    }
  }
  e.family("guest_mode_high_water", "gauge", "Most EMTs ever in guest mode at once.");
  e.sample("guest_mode_high_water", {}, src.guestModeHighWater);
  const s = src.sched;
  if (s) {
    e.family("sched_info", "gauge", "1, labelled with the policy in charge.");
    e.sample("sched_info", { policy: s.policy }, 1);
    e.family("sched_slots", "gauge", "Slots (pCPUs) the scheduler hands out.");
    e.sample("sched_slots", {}, s.slots);
    e.family("sched_decisions_total", "counter", "Decisions the policy plugin made.");
    e.sample("sched_decisions_total", {}, s.decisions);
    e.family("sched_ejections_total", "counter", "Policy plugins ejected (watchdog or manual).");
    e.sample("sched_ejections_total", {}, s.ejections.length);
    e.family("sched_slot_busy_seconds_total", "counter", "Seconds a vCPU held the slot.");
    s.slotBusyNs.forEach((ns, slot) =>
      e.sample("sched_slot_busy_seconds_total", { slot }, ns / 1e9)
    );
    e.family("sched_vcpu_run_seconds_total", "counter", "Guest seconds run under grants.");
    e.family(
      "sched_vcpu_wait_seconds_total",
      "counter",
      "Seconds runnable but waiting for a slot.",
    );
    e.family(
      "sched_vcpu_stolen_seconds_total",
      "counter",
      "Seconds other host threads held the vCPU's thread's CPU while it held a slot (not charged).",
    );
    e.family("sched_vcpu_grants_total", "counter", "Grants (slots) the vCPU received.");
    e.family("sched_vcpu_preemptions_total", "counter", "Times the vCPU was preempted.");
    e.family("sched_vcpu_wakes_total", "counter", "Times the vCPU went from halted to runnable.");
    e.family("sched_vcpu_slot", "gauge", "Slot the vCPU holds now, -1 when none.");
    e.family(
      "sched_vcpu_wake_latency_p50_seconds",
      "gauge",
      "Median wake-to-grant latency over the vCPU's last wakes.",
    );
    e.family(
      "sched_vcpu_wake_latency_p99_seconds",
      "gauge",
      "99th percentile wake-to-grant latency over the vCPU's last wakes.",
    );
    for (const v of s.vcpus) {
      const l = { vm: v.vm, vcpu: v.index };
      e.sample("sched_vcpu_run_seconds_total", l, v.runNs / 1e9);
      e.sample("sched_vcpu_wait_seconds_total", l, v.waitNs / 1e9);
      e.sample("sched_vcpu_stolen_seconds_total", l, v.stolenNs / 1e9);
      e.sample("sched_vcpu_grants_total", l, v.grants);
      e.sample("sched_vcpu_preemptions_total", l, v.preemptions);
      e.sample("sched_vcpu_wakes_total", l, v.wakes);
      e.sample("sched_vcpu_slot", l, v.state === "running" ? v.slot : -1);
      e.sample("sched_vcpu_wake_latency_p50_seconds", l, v.wakeLatencyP50Ns / 1e9);
      e.sample("sched_vcpu_wake_latency_p99_seconds", l, v.wakeLatencyP99Ns / 1e9);
    }
  }
  return e.render();
}
