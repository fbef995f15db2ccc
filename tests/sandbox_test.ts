/**
 * The plugin sandbox: a plugin can only compute. Every denied operation ends in an ejection that
 * names it, and the simulated VMs keep running under the fallback round-robin. Load errors name
 * the plugin file. Also measures the round-trip latency of one `pickNext`.
 */
import { deepStrictEqual as assertEquals, match, ok as assert, rejects } from "node:assert/strict";
import { SandboxPolicy } from "../src/sched/sandbox.ts";
import { ProcessSandboxPolicy } from "../src/sched/sandbox_process.ts";
import { PluginLoadError } from "../src/sched/load.ts";
import { simulate } from "../src/sim/mod.ts";
import { test } from "./helpers/deadline.ts";

const FIXTURES = new URL("./fixtures/plugins/", import.meta.url);
const RR = new URL("../plugins/rr.ts", import.meta.url);

/** A local HTTP server for the network cases; serves `.ts` as application/typescript. */
function serve(root: URL, served: string[] = []) {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = new URL(req.url).pathname;
    served.push(path);
    try {
      const body = await Deno.readFile(new URL(`.${path}`, root));
      return new Response(body, { headers: { "content-type": "application/typescript" } });
    } catch {
      return new Response("export default 1;", {
        headers: { "content-type": "application/typescript" },
      });
    }
  });
}

/**
 * Each fixture, the pattern its ejection's detail must match, and the virtual seconds to run:
 * an async denial (a floating promise) surfaces when the worker next looks at its event loop,
 * every 10 ms of wall time while busy, so those runs are longer.
 */
const DENIED: [string, RegExp, number][] = [
  ["read_file", /pickNext threw NotCapable: Requires read access to "\/etc\/hostname"/, 20],
  ["write_file", /pickNext threw NotCapable: Requires write access/, 20],
  [
    "fetch_local",
    /rejected: (NotCapable|TypeError): Requires net access to "127\.0\.0\.1:\d+"/,
    300,
  ],
  ["connect_local", /rejected: NotCapable: Requires net access to "127\.0\.0\.1:\d+"/, 300],
  ["env_get", /pickNext threw NotCapable: Requires env access to "HOME"/, 20],
  ["run_command", /pickNext threw NotCapable: Requires run access to "true"/, 20],
  ["dlopen", /pickNext threw NotCapable: Requires ffi access/, 20],
  ["import_local", /rejected: TypeError: Requires read access to ".*read_file\.ts"/, 300],
  [
    "import_remote",
    // The process sandbox runs with --no-remote.
    /rejected: TypeError: (Requires import access to "127\.0\.0\.1:\d+"|A remote specifier was requested: "http:\/\/127\.0\.0\.1:\d+\/evil\.ts", but --no-remote is specified)/,
    300,
  ],
  ["spawn_worker", /pickNext threw NotCapable: Can't escalate parent thread permissions/, 20],
];

/**
 * Every way a simulation sandboxes a plugin: the whole simulation inside the plugin's Worker
 * (the default), the engine here with each batch of calls crossing to the Worker (as the VMM),
 * and the same with the plugin in a child process.
 */
const MODES = [
  ["whole simulation in the sandbox", true],
  ["per-call sandbox", "per-call"],
  ["process sandbox", "process"],
] as const;

/** What `SimResult.sandbox` says for each mode. */
const RAN_IN = { true: "whole", "per-call": "per-call", process: "process" } as const;

/** Both sandboxes the VMM can run a plugin in, by how a test creates one. */
const PORTS = [
  ["worker", SandboxPolicy.create],
  ["process", ProcessSandboxPolicy.create],
] as const;

for (const [name, detail, seconds] of DENIED) {
  for (const [mode, sandbox] of MODES) {
    test(`sandbox denies ${name} (${mode}): ejected with the reason, VMs keep running under rr`, async () => {
      const server = serve(FIXTURES);
      try {
        const r = await simulate({
          plugin: new URL(`${name}.ts`, FIXTURES).href,
          sandbox,
          params: { port: server.addr.port },
          slots: 1,
          seconds,
          windowNs: 5e9,
          vms: ["a", "b", "c"].map((vm) => ({ name: vm, vcpus: 1, workload: { kind: "spin" } })),
        });
        assertEquals(r.sandbox, RAN_IN[`${sandbox}`]);
        assertEquals(r.ejections.length, 1, JSON.stringify(r.ejections));
        const e = r.ejections[0];
        assertEquals(e.plugin, name);
        assertEquals(e.reason, "throw");
        match(e.detail, detail);
        assertEquals(r.finalPlugin, "rr");
        // Nothing escaped.
        await rejects(Deno.stat("/tmp/deno-vmm-sandbox-escape.txt"));
        // Every VM kept its third of the slot, in the last window too (under rr).
        for (const vm of r.vms) assert(Math.abs(vm.share - 1 / 3) < 0.01, `${vm.name} ${vm.share}`);
        const last = r.windows!.at(-1)!;
        assert(last.startNs > e.at);
        for (const s of Object.values(last.shares)) assert(s > 0.3, JSON.stringify(last));
      } finally {
        await server.shutdown();
      }
    });
  }
}

for (const [kind, create] of PORTS) {
  test(`sandbox (${kind}): a plugin importing only types from mod.ts loads with read access to itself only`, async () => {
    const p = await create({ plugin: RR.href, slots: 2, params: { slice_ms: 3 } });
    try {
      assertEquals(p.name, "rr");
      p.addVcpu({ id: 7, vm: "a", index: 0, vmVcpus: 1, params: {}, state: "runnable" });
      assertEquals(p.pickNext(0, 0), { vcpu: 7, sliceNs: 3_000_000 });
      assertEquals(p.pickNext(1, 0), null);
      assertEquals(p.roundTrips, 3); // init, then one round trip per pickNext (addVcpu batched)
    } finally {
      p.close();
    }
  });

  test(`sandbox (${kind}): a relative path resolves against the current directory`, async () => {
    const rel = RR.pathname.replace(`${Deno.cwd()}/`, "");
    const p = await create({ plugin: rel, slots: 1 });
    p.close();
    assertEquals(p.url, RR.href);
  });

  test(`sandbox (${kind}): load errors name the plugin file`, async () => {
    const dir = await Deno.makeTempDir();
    const write = async (name: string, text: string) => {
      await Deno.writeTextFile(`${dir}/${name}`, text);
      return `${dir}/${name}`;
    };
    try {
      const cases: [string, RegExp][] = [
        [`${dir}/missing.ts`, /missing\.ts: module not found/],
        [
          await write("syntax.ts", "export default { pickNext( };\n"),
          /syntax\.ts: .*(Expected|Unexpected)/,
        ],
        [
          await write("nodefault.ts", "export const x = 1;\n"),
          /nodefault\.ts: the module has no default export/,
        ],
        [
          await write("nopick.ts", "export default { onHalt() {}, onWake() {} };\n"),
          /nopick\.ts: the default export has no pickNext function/,
        ],
        [
          await write("notobj.ts", "export default 42;\n"),
          /notobj\.ts: the default export is a number/,
        ],
        [
          await write(
            "initthrows.ts",
            "export default { init() { throw new Error('bad params'); }, pickNext() { return null; }, onHalt() {}, onWake() {} };\n",
          ),
          /initthrows\.ts: init threw Error: bad params/,
        ],
        [
          await write(
            "imports.ts",
            `import { x } from "./other.ts";\nexport default { pickNext() { return x; }, onHalt() {}, onWake() {} };\n`,
          ),
          /imports\.ts: .*Requires read access to ".*other\.ts"/,
        ],
      ];
      await write("other.ts", "export const x = null;\n");
      for (const [plugin, re] of cases) {
        const err = await create({ plugin, slots: 1 }).then(
          (p) => {
            p.close();
            return null;
          },
          (e) => e,
        );
        assert(err instanceof PluginLoadError, `${plugin}: ${err}`);
        match(err.message, re);
        // The same from a simulation (run whole in the Worker, or per call in a process), naming
        // the plugin as given.
        const sim = await simulate({
          plugin,
          sandbox: kind === "process" ? "process" : true,
          slots: 1,
          seconds: 1,
          vms: [{ name: "a", vcpus: 1, workload: { kind: "spin" } }],
        }).then(() => null, (e) => e);
        assert(sim instanceof PluginLoadError, `${plugin} in a simulation: ${sim}`);
        match(sim.message, re);
        assertEquals(sim.plugin, plugin);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

for (
  const [kind, module, cls] of [
    ["worker", "sandbox.ts", "SandboxPolicy"],
    ["process", "sandbox_process.ts", "ProcessSandboxPolicy"],
  ]
) {
  test(`sandbox (${kind}): a remote plugin needs an explicit, scoped import grant`, async () => {
    const served: string[] = [];
    const server = serve(new URL("../", import.meta.url), served);
    const dir = await Deno.makeTempDir();
    try {
      // A URL no run fetched before: a port the OS handed out before may still be in Deno's cache
      // of remote modules, and the process sandbox's child (--cached-only) would then load the
      // plugin from there and fetch nothing (it did once, the port of the Worker case before it).
      const url = `http://127.0.0.1:${server.addr.port}/plugins/rr.ts?run=${crypto.randomUUID()}`;
      const host = `127.0.0.1:${server.addr.port}`;
      // In a subprocess with --no-lock, so that the random port does not end up in deno.lock.
      const script = `${dir}/remote.ts`;
      await Deno.writeTextFile(
        script,
        `import { ${cls} as Port } from ${
          JSON.stringify(new URL(`../src/sched/${module}`, import.meta.url).href)
        };
const out: string[] = [];
for (const allowImport of [undefined, ["example.com"], [${JSON.stringify(host)}]]) {
  try {
    const p = await Port.create({ plugin: ${JSON.stringify(url)}, slots: 1, allowImport });
    p.close();
    out.push("loaded " + p.name);
  } catch (e) {
    out.push((e as Error).message);
  }
}
console.log(JSON.stringify(out));
`,
      );
      const r = await new Deno.Command(Deno.execPath(), {
        // --reload: a port the OS handed out before may still be in Deno's cache of remote modules,
        // and then nothing would be fetched.
        args: ["run", "-A", "--no-lock", `--reload=${url}`, "--unstable-worker-options", script],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(r.stderr);
      assertEquals(r.code, 0, stderr);
      const [none, other, granted] = JSON.parse(new TextDecoder().decode(r.stdout)) as string[];
      match(none, /explicit grant for 127\.0\.0\.1:\d+/);
      match(other, /explicit grant/);
      assertEquals(granted, "loaded rr");
      // Only the plugin's own file was fetched: its `import type` of mod.ts is erased.
      assertEquals(served, ["/plugins/rr.ts"]);
    } finally {
      await server.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

for (const [kind, create] of PORTS) {
  test(`sandbox (${kind}): pickNext round-trip latency (printed)`, async () => {
    const p = await create({ plugin: RR.href, slots: 1 });
    try {
      for (let i = 0; i < 4; i++) {
        p.addVcpu({ id: i, vm: "a", index: i, vmVcpus: 4, params: {}, state: "runnable" });
      }
      const lat: number[] = [];
      let now = 0;
      for (let i = 0; i < 20_000; i++) {
        const t = performance.now();
        const d = p.pickNext(0, now)!;
        lat.push((performance.now() - t) * 1000);
        now += 1000;
        p.onDeschedule(d.vcpu, 0, 1000, "slice", now);
      }
      lat.sort((a, b) => a - b);
      console.log(
        `sandbox (${kind}) pickNext round trip: p50 ${lat[10_000].toFixed(1)} µs, p99 ${
          lat[19_800].toFixed(1)
        } µs (${p.roundTrips} round trips)`,
      );
    } finally {
      p.close();
    }
  });
}

test("process sandbox: npm packages are denied (--no-npm), which Worker permissions leave open", async () => {
  const r = await simulate({
    plugin: new URL("import_npm.ts", FIXTURES).href,
    sandbox: "process",
    slots: 1,
    seconds: 300,
    vms: ["a", "b", "c"].map((vm) => ({ name: vm, vcpus: 1, workload: { kind: "spin" } })),
  });
  assertEquals(r.policyEvents["npm-imported"], undefined);
  assertEquals(r.ejections.length, 1, JSON.stringify(r.ejections));
  assertEquals([r.ejections[0].plugin, r.ejections[0].reason], ["import_npm", "throw"]);
  match(r.ejections[0].detail, /rejected: TypeError: npm specifiers were requested; but --no-npm/);
  assertEquals(r.finalPlugin, "rr");
});
