/**
 * The `deno-vmm` command: installed from a URL (served from 127.0.0.1) and with
 * `deno task install`, into a temporary root, with HOME and DENO_DIR temporary too (the user's
 * ~/.deno and caches are never touched). Run from a directory outside the checkout, it answers
 * `--help` for every subcommand, and runs a plugin in the sandbox, which needs the
 * `--unstable-worker-options` flag the install carries: deno.json's `unstable` is not read by
 * an installed command (the install without the flag shows it).
 */
import { deepStrictEqual, equal, match, ok } from "node:assert/strict";
import { test } from "./helpers/deadline.ts";
import { serveDir } from "./helpers/file_server.ts";
import { VERSION } from "../mod.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const SUBCOMMANDS = ["run", "demo", "scenario", "sim", "trace", "ctl", "new-plugin"];

/** A self-contained plugin (it can import nothing in the sandbox): one FIFO queue. */
const FIFO_PLUGIN = `
const queue = [];
export default {
  name: "fifo",
  addVcpu: (info) => void (info.state === "runnable" && queue.push(info.id)),
  pickNext: () => queue.length ? { vcpu: queue.shift(), sliceNs: 10e6 } : null,
  onHalt: (id) => void queue.splice(queue.indexOf(id) >>> 0, 1),
  onWake: (id) => void queue.push(id),
  onDeschedule: (id) => void queue.push(id),
};
`;

/** Temporary HOME, DENO_DIR, install root and working directory, outside the checkout. */
interface Sandbox {
  dir: string;
  env: Record<string, string>;
  work: string;
  bin: string;
}

async function sandbox(): Promise<Sandbox> {
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-install-" });
  ok(!dir.startsWith(ROOT), "the temporary directory is outside the checkout");
  for (const d of ["home", "deno_dir", "root", "work"]) await Deno.mkdir(`${dir}/${d}`);
  const denoBin = Deno.execPath().slice(0, Deno.execPath().lastIndexOf("/"));
  const env = {
    HOME: `${dir}/home`,
    DENO_DIR: `${dir}/deno_dir`,
    DENO_INSTALL_ROOT: `${dir}/root`,
    // The installed script runs `deno` from PATH.
    PATH: `${denoBin}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`,
    NO_COLOR: "1",
  };
  return { dir, env, work: `${dir}/work`, bin: `${dir}/root/bin/deno-vmm` };
}

interface Ran {
  code: number;
  out: string;
}

async function run(cmd: string, args: string[], cwd: string, env: Record<string, string>) {
  const o = await new Deno.Command(cmd, { args, cwd, env, stdout: "piped", stderr: "piped" })
    .output();
  const dec = new TextDecoder();
  return { code: o.code, out: dec.decode(o.stdout) + dec.decode(o.stderr) } satisfies Ran;
}

/** `--help`, `--version` and each subcommand's `--help`, from outside the checkout. */
async function checkHelp(s: Sandbox): Promise<void> {
  const help = await run(s.bin, ["--help"], s.work, s.env);
  equal(help.code, 0, help.out);
  match(help.out, /deno-vmm <command>/);
  for (const c of SUBCOMMANDS) match(help.out, new RegExp(`^  ${c} `, "m"), `${c} listed`);
  const version = await run(s.bin, ["--version"], s.work, s.env);
  deepStrictEqual([version.code, version.out.trim()], [0, `deno-vmm ${VERSION}`]);
  for (const c of SUBCOMMANDS) {
    const r = await run(s.bin, [c, "--help"], s.work, s.env);
    equal(r.code, 0, `${c} --help: ${r.out}`);
    match(r.out, /Usage: /, `${c} --help`);
  }
  const bad = await run(s.bin, ["nonsense"], s.work, s.env);
  equal(bad.code, 2, bad.out);
}

/** Runs FIFO_PLUGIN in the simulator (the sandbox Worker) for one simulated second. */
async function simulatePlugin(s: Sandbox): Promise<Ran> {
  await Deno.writeTextFile(`${s.work}/fifo.js`, FIFO_PLUGIN);
  await Deno.writeTextFile(
    `${s.work}/two.json`,
    JSON.stringify({
      name: "two",
      slots: 1,
      seconds: 1,
      policy: "fifo.js",
      vms: [{ name: "a", workload: { kind: "spin" } }, { name: "b", workload: { kind: "spin" } }],
    }),
  );
  return await run(s.bin, ["sim", "--scenario", "two.json"], s.work, s.env);
}

test("deno install <url>/mod.ts --unstable-worker-options: a deno-vmm command", async () => {
  const server = serveDir(ROOT);
  const s = await sandbox();
  try {
    const url = `${server.url}mod.ts`;
    const base = ["install", "-g", "-A", "-f", "-n", "deno-vmm"];

    // Without the flag the command installs and answers --help, but the sandbox cannot start:
    // deno.json's "unstable" does not come with a URL install.
    const plain = await run(Deno.execPath(), [...base, url], s.work, s.env);
    equal(plain.code, 0, plain.out);
    ok(!(await Deno.readTextFile(s.bin)).includes("--unstable-worker-options"));
    await checkHelp(s);
    const denied = await simulatePlugin(s);
    equal(denied.code, 70, denied.out);
    match(denied.out, /--unstable-worker-options/);

    // With it, the generated script passes it to every run.
    const r = await run(
      Deno.execPath(),
      [...base, "--unstable-worker-options", url],
      s.work,
      s.env,
    );
    equal(r.code, 0, r.out);
    const script = await Deno.readTextFile(s.bin);
    match(script, /deno run .*--unstable-worker-options.* 'http:\/\/127\.0\.0\.1:\d+\/mod\.ts'/);
    await checkHelp(s);
    const sim = await simulatePlugin(s);
    equal(sim.code, 0, sim.out);
    match(sim.out, /^plugin fifo, 1 slot/m);
    match(sim.out, /^a\s+1\s+\d/m);
    match(sim.out, /^b\s+1\s+\d/m);
    // The plugin ran sandboxed: the simulation's sandbox Worker was fetched from the URL.
    ok(server.requests.some((q) => q.path === "/src/sim/sim_worker.ts"), "served");
  } finally {
    await server.close();
    await Deno.remove(s.dir, { recursive: true });
  }
}, { deadlineMs: 180_000 });

test("deno task install: a deno-vmm command that runs this checkout", async () => {
  const s = await sandbox();
  try {
    const r = await run(Deno.execPath(), ["task", "install"], ROOT, s.env);
    equal(r.code, 0, r.out);
    const script = await Deno.readTextFile(s.bin);
    match(script, /--unstable-worker-options/);
    ok(script.includes(`'file://${ROOT}mod.ts'`), script);
    await checkHelp(s);
    const sim = await simulatePlugin(s);
    equal(sim.code, 0, sim.out);
    match(sim.out, /^plugin fifo, 1 slot/m);
  } finally {
    await Deno.remove(s.dir, { recursive: true });
  }
}, { deadlineMs: 180_000 });
