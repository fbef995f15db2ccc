/**
 * The control API on real KVM: the socket (mode 0600, stale and taken paths), every endpoint,
 * bad requests (a 4xx with a clear message and nothing changed, read back), weights set through
 * the API moving the CPU shares measured from the shim's counters, pause / resume, /metrics as
 * Prometheus text, and `ctl` run as a subprocess against a live server.
 */
import { deepStrictEqual as assertEquals, match, ok as assert } from "node:assert/strict";
import { KERNEL, requireKernel, sleep, untilAdvanced } from "./helpers/vmm.ts";
import { runCli } from "./helpers/cli.ts";
import { type SchedulerOptions, type Vm, Vmm } from "../mod.ts";
import { type ApiServer, ApiSocketError, startApiServer } from "../src/api/server.ts";
import { ApiClient, ApiRequestError } from "../src/api/client.ts";
import { escapeLabelValue } from "../src/api/metrics.ts";
import { test } from "./helpers/deadline.ts";

const PLUGINS = new URL("../plugins/", import.meta.url);
const plugin = (name: string) => new URL(name, PLUGINS).href;
const ROOT = new URL("../", import.meta.url).pathname;

/** An HTTP answer: status and parsed JSON (or text). */
interface Answer {
  status: number;
  body: Record<string, unknown>;
  text: string;
}

/** A raw HTTP caller on the socket (for malformed requests the typed client cannot send). */
class Raw {
  #http: Deno.HttpClient;
  constructor(path: string) {
    this.#http = Deno.createHttpClient({ proxy: { transport: "unix", path } });
  }
  async call(method: string, route: string, body?: string | object): Promise<Answer> {
    const res = await fetch(`http://localhost${route}`, {
      method,
      client: this.#http,
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: Record<string, unknown> = {};
    try {
      parsed = JSON.parse(text);
    } catch {
      // metrics: text
    }
    return { status: res.status, body: parsed, text };
  }
  close() {
    this.#http.close();
  }
}

interface Ctx {
  vmm: Vmm;
  path: string;
  api: ApiClient;
  raw: Raw;
  vms: Record<string, Vm>;
}

async function withApi(
  o: { scheduler?: SchedulerOptions; vms: { name: string; vcpus?: number; weight?: number }[] },
  body: (c: Ctx) => Promise<void>,
): Promise<void> {
  await requireKernel();
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-api-" });
  const path = `${dir}/api.sock`;
  const vmm = await Vmm.create({ scheduler: o.scheduler });
  let server: ApiServer | undefined;
  const api = new ApiClient(path);
  const raw = new Raw(path);
  try {
    const vms: Record<string, Vm> = {};
    for (const v of o.vms) {
      vms[v.name] = await vmm.createVm({
        name: v.name,
        vcpus: v.vcpus ?? 1,
        kernel: KERNEL,
        cmdline: "workload=spin seconds=0",
        sched: v.weight ? { weight: v.weight } : {},
      });
    }
    server = await startApiServer(vmm, path);
    for (const vm of Object.values(vms)) await vm.start();
    // Every vCPU booted and runs its workload before the test looks (an AP comes up through
    // INIT/SIPI and the emulated real mode, which a loaded host can stretch past 500 ms).
    for (const vm of Object.values(vms)) await untilAdvanced(vm);
    await body({ vmm, path, api, raw, vms });
  } finally {
    api.close();
    raw.close();
    await server?.close();
    await vmm.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Guest ns of a VM's vCPUs (the shim's clock). */
function guestNs(vm: Vm): number {
  return vm.counters().reduce((s, c) => s + c.nsGuest, 0);
}

/** Asserts a 4xx with a JSON error matching `re`. */
function refused(a: Answer, status: number, re: RegExp): void {
  assertEquals(a.status, status, `want ${status}, got ${a.status}: ${a.text}`);
  assert(typeof a.body.error === "string", `no error message: ${a.text}`);
  match(a.body.error as string, re);
}

// ------------------------------------------------------------------ Prometheus text parser

/** One sample of the text format. */
interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * Parses the Prometheus text format 0.0.4 strictly enough to catch what a scraper rejects:
 * `# HELP` / `# TYPE` before a family's samples, one TYPE per family, valid names, quoted and
 * escaped label values, numeric values. Returns the samples and each family's type.
 */
function parsePrometheus(text: string): { samples: PromSample[]; types: Map<string, string> } {
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const samples: PromSample[] = [];
  const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
  const lines = text.split("\n");
  assertEquals(lines.at(-1), "", "the text ends with a newline");
  for (const [n, line] of lines.slice(0, -1).entries()) {
    const where = `line ${n + 1}: ${line}`;
    if (line.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
      if (!m) continue; // a plain comment
      assert(NAME.test(m[2]), `bad metric name, ${where}`);
      if (m[1] === "TYPE") {
        assert(!types.has(m[2]), `second TYPE for ${m[2]}`);
        assert(["counter", "gauge", "histogram", "summary", "untyped"].includes(m[3]), where);
        types.set(m[2], m[3]);
      } else {
        assert(!helps.has(m[2]), `second HELP for ${m[2]}`);
        helps.add(m[2]);
      }
      continue;
    }
    assert(line.trim() !== "", `empty line inside the text, ${where}`);
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$/.exec(line);
    assert(m, `not a sample, ${where}`);
    const labels: Record<string, string> = {};
    let rest = m[3] ?? "";
    while (rest !== "") {
      const l = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/.exec(rest);
      assert(l, `bad labels, ${where}`);
      assert(!(l[1] in labels), `label ${l[1]} twice, ${where}`);
      labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
      rest = rest.slice(l[0].length);
    }
    const v = m[4];
    const value = v === "+Inf"
      ? Infinity
      : v === "-Inf"
      ? -Infinity
      : v === "NaN"
      ? NaN
      : Number(v);
    assert(v === "NaN" || !Number.isNaN(value), `bad value, ${where}`);
    assert(types.has(m[1]), `sample before its TYPE, ${where}`);
    if (types.get(m[1]) === "counter") assert(value >= 0, `negative counter, ${where}`);
    samples.push({ name: m[1], labels, value });
  }
  for (const t of types.keys()) assert(helps.has(t), `no HELP for ${t}`);
  return { samples, types };
}

function sample(samples: PromSample[], name: string, labels: Record<string, string>): number {
  const s = samples.find((x) =>
    x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v)
  );
  assert(s, `no sample ${name}${JSON.stringify(labels)}`);
  return s.value;
}

// ------------------------------------------------------------------ the socket

test("api socket: mode 0600, removed on close; taken paths refused, stale replaced", async () => {
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-api-" });
  const vmm = await Vmm.create();
  try {
    const path = `${dir}/api.sock`;
    const server = await startApiServer(vmm, path);
    const info = await Deno.lstat(path);
    assert(info.isSocket);
    assertEquals((info.mode! & 0o777).toString(8), "600");
    // A second server on the same path: refused, the first keeps serving.
    await startApiServer(vmm, path).then(
      () => assert(false, "a second server started on a live socket"),
      (e) => {
        assert(e instanceof ApiSocketError, String(e));
        match(e.message, /in use/);
      },
    );
    const api = new ApiClient(path);
    assertEquals(await api.listVms(), []);
    api.close();
    // A stale socket (its server is gone; connecting is refused) is replaced. A hard link keeps
    // the socket's inode on disk after its listener closes and removes the original name.
    const stale = `${dir}/stale.sock`;
    await Deno.link(path, stale);
    await server.close();
    await Deno.lstat(path).then(() => assert(false, "socket left after close"), () => {});
    assert((await Deno.lstat(stale)).isSocket);
    const again = await startApiServer(vmm, stale);
    assertEquals(((await Deno.lstat(stale)).mode! & 0o777).toString(8), "600");
    await again.close();
    // Not a socket: refused and left alone.
    const file = `${dir}/file`;
    await Deno.writeTextFile(file, "keep me");
    await startApiServer(vmm, file).then(
      () => assert(false, "started over a regular file"),
      (e) => match((e as Error).message, /exists and is not a socket/),
    );
    assertEquals(await Deno.readTextFile(file), "keep me");
  } finally {
    await vmm.close();
    await Deno.remove(dir, { recursive: true });
  }
});

// ------------------------------------------------------------------ endpoints

test("api: every endpoint on a credit scheduler, one slot", async () => {
  await withApi({
    scheduler: { plugin: plugin("credit.ts"), slots: 1 },
    vms: [{ name: "a", vcpus: 2 }, { name: "b", weight: 512 }],
  }, async ({ api, raw, vms }) => {
    await sleep(300);
    const root = await raw.call("GET", "/");
    assertEquals(root.status, 200);
    assertEquals(root.body.scheduler, "credit");

    const list = await api.listVms();
    assertEquals(list.map((v) => [v.name, v.state, v.vcpus]), [["a", "running", 2], [
      "b",
      "running",
      1,
    ]]);
    assertEquals(list[1].sched, { weight: 512 });
    assert(list.every((v) => v.cpuSeconds > 0), JSON.stringify(list));

    const a = await api.getVm("a");
    assertEquals(a.vcpuStats.length, 2);
    for (const c of a.vcpuStats) {
      assert(c.sched, "per-vCPU scheduler state");
      assert(["running", "runnable", "halted"].includes(c.sched.state), c.sched.state);
      assert(c.sched.grants > 0 && c.guestNs > 0 && c.runs > 0, JSON.stringify(c));
      assert(c.guest && c.guest.iterations > 0, "guest-published counters");
    }

    const s = await api.getSched();
    assertEquals([s.policy, s.slots, s.slotBusySeconds.length], ["credit", 1, 1]);
    assert(s.decisions > 0 && s.slotBusySeconds[0] > 0 && s.guestModeHighWater === 1);
    assertEquals(s.vcpus.length, 3);

    const set = await api.setSchedParams("a", { weight: 768, cap: 50 });
    assertEquals(set.params, { weight: 768, cap: 50 });
    assertEquals((await api.listVms())[0].sched, { weight: 768, cap: 50 });
    const tslice = await api.setSchedParams("*", { tslice_ms: 10 });
    assertEquals(tslice.params, { tslice_ms: 10 });
    // A per-VM key the current policy does not read is kept (for the next one), with a note.
    const rt = await api.setSchedParams("b", { period_ms: 20, budget_ms: 5 });
    match(rt.note ?? "", /credit does not read period_ms, budget_ms/);

    const paused = await api.setVmState("a", "paused");
    assertEquals(paused.state, "paused");
    assertEquals((await api.getVm("a")).state, "paused");
    assertEquals((await api.setVmState("a", "running")).state, "running");

    const swapped = await api.swapPolicy(plugin("rr.ts"));
    assertEquals(swapped.policy, "rr");
    assertEquals((await api.getSched()).policy, "rr");
    assertEquals((await api.swapPolicy(plugin("credit.ts"), { tslice_ms: 30 })).policy, "credit");

    const metrics = await raw.call("GET", "/metrics");
    assertEquals(metrics.status, 200);
    parsePrometheus(metrics.text);

    const ej = await api.eject("test");
    assertEquals(ej.ejections.length, 1, JSON.stringify(ej.ejections));
    assertEquals([ej.ejections[0].plugin, ej.ejections[0].reason], ["credit", "manual"]);
    assert(ej.policy !== "credit", ej.policy);
    assertEquals((await api.getSched()).ejections.length, 1);

    const stopped = await api.setVmState("b", "stopped");
    assertEquals([stopped.state, stopped.exit], ["ended", { kind: "stopped" }]);
    assertEquals(vms.a.state, "running", "stopping b left a alone");
  });
});

test("api: bad requests are 4xx with a clear message and change nothing", async () => {
  await withApi({
    scheduler: { plugin: plugin("credit.ts"), slots: 1 },
    vms: [{ name: "a", weight: 512 }, { name: "b" }],
  }, async ({ api, raw, vms }) => {
    const before = await api.listVms();
    refused(await raw.call("GET", "/vms/nope"), 404, /no VM named 'nope' \(VMs: a, b\)/);
    refused(await raw.call("PUT", "/vms/nope/state", { state: "paused" }), 404, /no VM named/);
    refused(await raw.call("GET", "/nothing/here"), 404, /no such endpoint: GET \/nothing\/here/);
    refused(await raw.call("DELETE", "/vms/a"), 405, /DELETE is not allowed on \/vms\/a/);
    refused(await raw.call("PUT", "/vms/a/state", "{not json"), 400, /not valid JSON/);
    refused(await raw.call("PUT", "/vms/a/state", "[1]"), 400, /must be a JSON object/);
    refused(await raw.call("PUT", "/vms/a/state", ""), 400, /needs a JSON object body/);
    refused(
      await raw.call("PUT", "/vms/a/state", { state: "asleep" }),
      400,
      /state must be one of "paused", "running", "stopped", got "asleep"/,
    );
    refused(
      await raw.call("PUT", "/vms/a/state", { state: "paused", force: true }),
      400,
      /unknown field 'force'/,
    );
    const params = (target: string, p: unknown) =>
      raw.call("PUT", "/sched/params", { target, params: p });
    refused(await params("a", { weight: 0 }), 400, /weight must be an integer from 1 to 65535/);
    refused(await params("a", { weight: 1.5 }), 400, /weight must be an integer/);
    refused(await params("a", { weight: "heavy" }), 400, /weight must be a number/);
    refused(await params("a", { cap: 101 }), 400, /cap must be an integer from 0 to 100, got 101/);
    refused(await params("a", { cap: -1 }), 400, /cap must be an integer from 0 to 100/);
    refused(await params("a", { period_ms: 0 }), 400, /period_ms must be > 0/);
    refused(await params("a", { period_ms: 5, budget_ms: 8 }), 400, /budget .* must not exceed/);
    refused(await params("a", { budget_ms: 12 }), 400, /must not exceed the period \(10 ms\)/);
    refused(
      await params("a", { wieght: 512 }),
      400,
      /unknown parameter 'wieght' for policy credit/,
    );
    refused(await params("a", { tslice_ms: 10 }), 400, /tslice_ms is policy-wide: use target "\*"/);
    refused(await params("a", { weight: { x: 1 } }), 400, /must be a number, string or boolean/);
    refused(await params("a", {}), 400, /params is empty/);
    refused(await params("*", { weight: 512 }), 400, /weight is a per-VM parameter/);
    refused(await params("*", { slice: 3 }), 400, /unknown parameter 'slice' for policy credit/);
    refused(await params("nope", { weight: 512 }), 404, /no VM named 'nope'/);
    refused(
      await raw.call("PUT", "/sched/params", { params: { weight: 2 } }),
      400,
      /target must be a VM name or "\*"/,
    );
    refused(
      await raw.call("PUT", "/sched/policy", { plugin: "/no/such/plugin.ts" }),
      400,
      /no\/such\/plugin\.ts/,
    );
    refused(await raw.call("PUT", "/sched/policy", { plugin: 3 }), 400, /plugin must be/);
    refused(await raw.call("POST", "/sched/eject", { reason: 7 }), 400, /reason must be a string/);
    refused(await raw.call("POST", "/sched/eject", "{"), 400, /not valid JSON/);
    // Nothing changed: same VMs, states and parameters; same policy, no ejection.
    assertEquals(
      (await api.listVms()).map((v) => [v.name, v.state, v.sched]),
      before.map((v) => [v.name, v.state, v.sched]),
    );
    assertEquals(vms.a.config.sched, { weight: 512 });
    const s = await api.getSched();
    assertEquals([s.policy, s.ejections.length], ["credit", 0]);
    // Transitions that cannot happen: 409, and the VM stays as it was.
    await api.setVmState("b", "stopped");
    refused(await raw.call("PUT", "/vms/b/state", { state: "paused" }), 409, /is ended/);
    refused(await raw.call("PUT", "/vms/b/state", { state: "running" }), 409, /is ended/);
    refused(await params("b", { weight: 300 }), 409, /vm 'b' is ended/);
    assertEquals(vms.b.state, "ended");
    // The typed client turns a refusal into an ApiRequestError with the server's message.
    await api.setSchedParams("a", { weight: 0 }).then(
      () => assert(false, "weight 0 accepted"),
      (e) => {
        assert(e instanceof ApiRequestError);
        assertEquals(e.status, 400);
        match(e.message, /weight must be an integer from 1 to 65535, got 0/);
      },
    );
  });
});

test("api: a VMM without a scheduler refuses /sched routes, serves the rest", async () => {
  await withApi({ vms: [{ name: "free" }] }, async ({ api, raw }) => {
    for (
      const [m, r, b] of [
        ["GET", "/sched", undefined],
        ["PUT", "/sched/params", { target: "free", params: { weight: 2 } }],
        ["PUT", "/sched/policy", { plugin: plugin("rr.ts") }],
        ["POST", "/sched/eject", {}],
      ] as const
    ) {
      refused(await raw.call(m, r, b), 404, /this VMM has no scheduler/);
    }
    const vm = await api.getVm("free");
    assertEquals(vm.vcpuStats[0].sched, null);
    // A run is counted when KVM_RUN returns: the first one (the boot) may still be going.
    let runs = 0;
    for (let i = 0; i < 200 && runs === 0; i++) {
      const { samples, types } = parsePrometheus(await api.metrics());
      assert(!types.has("deno_vmm_sched_decisions_total"));
      runs = sample(samples, "deno_vmm_vcpu_runs_total", { vm: "free", vcpu: "0" });
      if (runs === 0) await sleep(10);
    }
    assert(runs > 0, "no KVM_RUN counted in 2 s");
  });
});

// ------------------------------------------------------------------ steering

test("api: weights set through the API change the CPU shares (256 vs 1024, one slot)", async () => {
  await withApi({
    scheduler: { plugin: plugin("credit.ts"), slots: 1 },
    vms: [{ name: "light" }, { name: "heavy" }],
  }, async ({ api, vms }) => {
    const measure = async (ms: number) => {
      const a0 = guestNs(vms.light), b0 = guestNs(vms.heavy);
      await sleep(ms);
      const a = guestNs(vms.light) - a0, b = guestNs(vms.heavy) - b0;
      return { light: a / (a + b), heavy: b / (a + b) };
    };
    await sleep(300);
    const even = await measure(1500);
    assert(Math.abs(even.heavy - 0.5) < 0.12, `equal weights: heavy ${even.heavy}`);
    await api.setSchedParams("light", { weight: 256 });
    await api.setSchedParams("heavy", { weight: 1024 });
    assertEquals((await api.getVm("heavy")).sched, { weight: 1024 });
    await sleep(400); // a few accounting periods
    const weighted = await measure(2500);
    console.log(
      `shares, equal weights: ${(even.heavy * 100).toFixed(1)} %; ` +
        `1024 vs 256: heavy ${(weighted.heavy * 100).toFixed(1)} %, ` +
        `light ${(weighted.light * 100).toFixed(1)} % (want 80 / 20)`,
    );
    assert(weighted.heavy > 0.7, `heavy got ${(weighted.heavy * 100).toFixed(1)} %, want ~80`);
    assert(weighted.heavy / weighted.light > 2.5, JSON.stringify(weighted));
    // Refused: the shares stay where they are.
    await api.setSchedParams("heavy", { weight: 0 }).catch(() => {});
    assertEquals((await api.getVm("heavy")).sched, { weight: 1024 });
    const still = await measure(1500);
    assert(still.heavy > 0.7, `after a refused change heavy got ${still.heavy}`);
  });
});

test("api: pause stops a VM's guest time and gives its slot away; resume restores both", async () => {
  await withApi({
    scheduler: { plugin: plugin("credit.ts"), slots: 1 },
    vms: [{ name: "p" }, { name: "q" }],
  }, async ({ api, vms }) => {
    await sleep(300);
    assertEquals((await api.setVmState("p", "paused")).state, "paused");
    assertEquals(vms.p.state, "paused");
    await sleep(100);
    const p0 = guestNs(vms.p), q0 = guestNs(vms.q), t0 = performance.now();
    await sleep(800);
    const wall = (performance.now() - t0) * 1e6;
    assertEquals(guestNs(vms.p) - p0, 0, "a paused VM runs no guest code");
    const qShare = (guestNs(vms.q) - q0) / wall;
    assert(qShare > 0.8, `q got ${(qShare * 100).toFixed(1)} % of the slot while p was paused`);
    const view = await api.getVm("p");
    assert(view.vcpuStats.every((c) => c.sched?.state !== "running"), "paused vCPU holds no slot");
    // Pausing twice is a no-op, not an error.
    assertEquals((await api.setVmState("p", "paused")).state, "paused");
    assertEquals((await api.setVmState("p", "running")).state, "running");
    const p1 = guestNs(vms.p);
    await sleep(800);
    assert(guestNs(vms.p) - p1 > 200e6, "p runs again after resume");
  });
});

// ------------------------------------------------------------------ metrics

test("api: /metrics is Prometheus text with every VM, vCPU, reason and slot", async () => {
  await withApi({
    scheduler: { plugin: plugin("credit.ts"), slots: 1 },
    vms: [{ name: "m1", vcpus: 2 }, { name: "m2.x-y" }],
  }, async ({ raw }) => {
    await sleep(500);
    const first = await raw.call("GET", "/metrics");
    assertEquals(first.status, 200);
    const { samples, types } = parsePrometheus(first.text);
    const want: Record<string, string> = {
      deno_vmm_vcpu_guest_seconds_total: "counter",
      deno_vmm_vcpu_halted_seconds_total: "counter",
      deno_vmm_vcpu_wait_seconds_total: "counter",
      deno_vmm_vcpu_exits_total: "counter",
      deno_vmm_vcpu_halts_total: "counter",
      deno_vmm_vcpu_wakes_total: "counter",
      deno_vmm_vcpu_pokes_total: "counter",
      deno_vmm_sched_decisions_total: "counter",
      deno_vmm_sched_ejections_total: "counter",
      deno_vmm_sched_slot_busy_seconds_total: "counter",
      deno_vmm_sched_vcpu_run_seconds_total: "counter",
      deno_vmm_sched_vcpu_wakes_total: "counter",
      deno_vmm_vm_state: "gauge",
    };
    for (const [name, type] of Object.entries(want)) assertEquals(types.get(name), type, name);
    for (const [vm, vcpu] of [["m1", "0"], ["m1", "1"], ["m2.x-y", "0"]]) {
      assert(sample(samples, "deno_vmm_vcpu_guest_seconds_total", { vm, vcpu }) > 0);
      assert(sample(samples, "deno_vmm_sched_vcpu_run_seconds_total", { vm, vcpu }) > 0);
      // Each vCPU woke at least once: from its reset (or INIT-SIPI) wait into its first grant.
      assert(sample(samples, "deno_vmm_sched_vcpu_wakes_total", { vm, vcpu }) >= 1);
      const exits = samples.filter((s) =>
        s.name === "deno_vmm_vcpu_exits_total" && s.labels.vm === vm && s.labels.vcpu === vcpu
      );
      assert(exits.length > 0 && exits.every((s) => /^[A-Z_0-9]+$/.test(s.labels.reason)));
      sample(samples, "deno_vmm_vcpu_wait_seconds_total", { vm, vcpu });
    }
    assertEquals(sample(samples, "deno_vmm_vm_state", { vm: "m1", state: "running" }), 1);
    assert(sample(samples, "deno_vmm_sched_slot_busy_seconds_total", { slot: "0" }) > 0.3);
    assertEquals(sample(samples, "deno_vmm_sched_ejections_total", {}), 0);
    // Counters only go up between scrapes.
    await sleep(300);
    const second = parsePrometheus((await raw.call("GET", "/metrics")).text).samples;
    for (const s of samples.filter((x) => types.get(x.name) === "counter")) {
      const again = sample(second, s.name, s.labels);
      assert(again >= s.value, `${s.name}${JSON.stringify(s.labels)} went down`);
    }
    // Label values are escaped as the format wants (VM names cannot hold these characters,
    // a policy name or plugin-chosen text could).
    const odd = 'a "quoted" \\ back\nslash';
    const parsed = parsePrometheus(
      `# HELP x h\n# TYPE x gauge\nx{v="${escapeLabelValue(odd)}"} 1\n`,
    );
    assertEquals(parsed.samples[0].labels.v, odd);
  });
});

// ------------------------------------------------------------------ ctl

/** `ctl` through `mod.ts` once the CLI registers it, else its own module. */
const CTL_VIA_MOD = (await Deno.readTextFile(new URL("../src/cli/main.ts", import.meta.url)))
  .includes("ctlCommand");
const CTL_MODULE = new URL("../src/cli/ctl.ts", import.meta.url).pathname;

async function ctl(path: string, ...args: string[]) {
  const argv = ["ctl", "--api", path, ...args];
  const out = CTL_VIA_MOD
    ? await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--unstable-worker-options", "mod.ts", ...argv],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output()
    : await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--unstable-worker-options", CTL_MODULE, ...argv.slice(1)],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

test("ctl against a live server: every command, server errors exit 1", async () => {
  await withApi({
    scheduler: { plugin: plugin("credit.ts"), slots: 1 },
    vms: [{ name: "a", vcpus: 2 }, { name: "b" }],
  }, async ({ path, api, vms }) => {
    let r = await ctl(path, "list");
    assertEquals(r.code, 0, r.stderr);
    match(r.stdout, /^NAME\s+STATE\s+VCPUS/m);
    match(r.stdout, /^a\s+running\s+2\s+64/m);
    match(r.stdout, /^b\s+running\s+1\s+64/m);

    r = await ctl(path, "show", "a");
    assertEquals(r.code, 0, r.stderr);
    match(r.stdout, /^state:\s+running$/m);
    match(r.stdout, /^0\s+(running|runnable|halted)\s/m);
    match(r.stdout, /^1\s+(running|runnable|halted)\s/m);

    r = await ctl(path, "sched-credit", "-d", "a", "-w", "512", "-c", "25");
    assertEquals(r.code, 0, r.stderr);
    match(r.stdout, /^a\s+512\s+25$/m);
    assertEquals((await api.getVm("a")).sched, { weight: 512, cap: 25 });

    r = await ctl(path, "sched-credit");
    assertEquals(r.code, 0, r.stderr);
    match(r.stdout, /^NAME\s+WEIGHT\s+CAP$/m);
    match(r.stdout, /^a\s+512\s+25$/m);
    match(r.stdout, /^b\s+-\s+-$/m);

    r = await ctl(path, "sched-credit", "-d", "a", "-w", "0");
    assertEquals(r.code, 1);
    match(r.stderr, /weight must be an integer from 1 to 65535, got 0 \(HTTP 400\)/);
    assertEquals((await api.getVm("a")).sched, { weight: 512, cap: 25 }, "unchanged");

    r = await ctl(path, "sched-credit", "-s", "-t", "10");
    assertEquals(r.code, 0, r.stderr);
    match(r.stdout, /credit: tslice_ms=10/);

    r = await ctl(path, "sched-rtds", "-d", "b", "-p", "10", "-b", "4");
    assertEquals(r.code, 0, r.stderr);
    match(r.stdout, /^b\s+10\s+4\s+-$/m);
    match(r.stdout, /note: credit does not read period_ms, budget_ms/);

    r = await ctl(path, "pause", "b");
    assertEquals([r.code, r.stdout.trim()], [0, "vm b: paused"], r.stderr);
    assertEquals(vms.b.state, "paused");
    r = await ctl(path, "resume", "b");
    assertEquals([r.code, r.stdout.trim()], [0, "vm b: running"], r.stderr);
    assertEquals(vms.b.state, "running");

    r = await ctl(path, "sched");
    assertEquals(r.code, 0, r.stderr);
    match(r.stdout, /^policy:\s+credit$/m);
    match(r.stdout, /^a\s+0\s+(running|runnable|halted)/m);
    match(r.stdout, /\sWAKES\s+WAKE P50\(us\)$/m);

    r = await ctl(path, "policy", "plugins/rr.ts"); // relative to ctl's working directory
    assertEquals([r.code, r.stdout.trim()], [0, "policy: rr"], r.stderr);
    r = await ctl(path, "policy", "plugins/nope.ts");
    assertEquals(r.code, 1);
    match(r.stderr, /nope\.ts/);
    assertEquals((await api.getSched()).policy, "rr");

    r = await ctl(path, "eject", "from ctl");
    assertEquals(r.code, 0, r.stderr);
    match(r.stdout, /^ejected rr; policy now /);
    assertEquals((await api.getSched()).ejections.at(-1)?.detail, "from ctl");

    r = await ctl(path, "metrics");
    assertEquals(r.code, 0, r.stderr);
    parsePrometheus(r.stdout);

    r = await ctl(path, "list", "--json");
    assertEquals(JSON.parse(r.stdout).map((v: { name: string }) => v.name), ["a", "b"]);

    r = await ctl(path, "show", "zz");
    assertEquals(r.code, 1);
    match(r.stderr, /no VM named 'zz' \(VMs: a, b\) \(HTTP 404\)/);

    r = await ctl(path, "stop", "b");
    assertEquals([r.code, r.stdout.trim()], [0, "vm b: ended"], r.stderr);

    // Usage errors exit 2 and name the problem; --help exits 0.
    r = await ctl(path);
    assertEquals(r.code, 2);
    match(r.stderr, /no command given/);
    r = await ctl(path, "sched-credit", "-p", "3");
    assertEquals(r.code, 2);
    match(r.stderr, /-p does not go with 'sched-credit'/);
    r = await ctl(path, "sched-credit", "-w", "512");
    assertEquals(r.code, 2);
    match(r.stderr, /needs -d VM/);
    r = await ctl(path, "--help");
    assertEquals(r.code, 0);
    match(r.stdout, /Usage: deno run -A mod.ts ctl/);
  });
});

test("ctl: an unreachable socket is a clear error, exit 1", async () => {
  const r = CTL_VIA_MOD
    ? await runCli(["ctl", "--api", "/nonexistent/api.sock", "list"])
    : await runCli(["--api", "/nonexistent/api.sock", "list"], CTL_MODULE);
  assertEquals(r.code, 1, r.stderr);
  match(r.stderr, /cannot reach the API at \/nonexistent\/api\.sock/);
});
