/** Importing mod.ts by URL from a local HTTP server (127.0.0.1) and booting hello. */
import { deepStrictEqual as assertEquals, match } from "node:assert/strict";
import { runCli } from "./helpers/cli.ts";
import { KERNEL, requireKernel } from "./helpers/vmm.ts";
import { test } from "./helpers/deadline.ts";
import { serveTree } from "./helpers/serve.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const TYPES: Record<string, string> = {
  ".ts": "application/typescript",
  ".c": "text/plain",
  ".json": "application/json",
};

test("mod.ts imported by URL from 127.0.0.1 boots hello", async () => {
  await requireKernel();
  const served: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = decodeURIComponent(new URL(req.url).pathname);
    if (path.includes("..")) return new Response("no", { status: 400 });
    try {
      const body = await Deno.readFile(`${ROOT}${path}`);
      served.push(path);
      const ext = path.slice(path.lastIndexOf("."));
      return new Response(body, {
        headers: { "content-type": TYPES[ext] ?? "application/octet-stream" },
      });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  try {
    const url = `http://127.0.0.1:${server.addr.port}/mod.ts`;
    // A program that imports the library by URL, as a user's would.
    const dir = await Deno.makeTempDir();
    const prog = `${dir}/main.ts`;
    await Deno.writeTextFile(
      prog,
      `import { Vmm } from "${url}";
const vmm = await Vmm.create();
const vm = await vmm.createVm({ name: "u", vcpus: 2, kernel: ${JSON.stringify(KERNEL)} });
await vm.start();
const exit = await vm.wait();
console.log(vm.consoleText());
console.log(JSON.stringify(exit));
await vmm.close();
`,
    );
    const r = await runCli([], prog);
    await Deno.remove(dir, { recursive: true });
    assertEquals(r.code, 0, r.stderr);
    match(r.stdout, /hello from vcpu 1 of 2/);
    match(r.stdout, /\{"kind":"exit","status":0\}/);
    // The shim's C source and the EMT worker came over HTTP too.
    for (const p of ["/ffi/shim.c", "/src/emt/emt_worker.ts"]) {
      assertEquals(served.includes(p), true, `${p} was not fetched over HTTP`);
    }
  } finally {
    await server.shutdown();
  }
});

test("by URL: plugins beside mod.ts load with no grant; any other remote plugin still needs one", async () => {
  // The same file at other places on the same host: only `plugins/` beside mod.ts is built in.
  const server = serveTree(new URL("../", import.meta.url), {
    alias: { "/elsewhere/rr.ts": "/plugins/rr.ts", "/plugins-extra/rr.ts": "/plugins/rr.ts" },
  });
  const dir = await Deno.makeTempDir();
  try {
    const base = server.base;
    const cases: [string, string[] | undefined][] = [
      [`${base}plugins/rr.ts`, undefined],
      [`${base}plugins/credit.ts`, []],
      [`${base}elsewhere/rr.ts`, undefined],
      [`${base}plugins/../elsewhere/rr.ts`, undefined],
      [`${base}plugins-extra/rr.ts`, ["example.com"]],
      [`${base}elsewhere/rr.ts`, [server.host]],
    ];
    // The sandbox (and so the built-in directory) imported by URL, as mod.ts run from a URL has
    // it; the plugins are loaded in the sandbox's Worker, every permission denied.
    const prog = `${dir}/main.ts`;
    await Deno.writeTextFile(
      prog,
      `import { SandboxPolicy } from "${base}src/sched/sandbox.ts";
const out: string[] = [];
for (const [plugin, allowImport] of ${JSON.stringify(cases)}) {
  try {
    const p = await SandboxPolicy.create({ plugin, slots: 1, allowImport });
    p.close();
    out.push("loaded " + p.name);
  } catch (e) {
    out.push((e as Error).message);
  }
}
console.log(JSON.stringify(out));
`,
    );
    // An empty Deno cache: the port may have been another test server's, whose files Deno cached.
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--unstable-worker-options", prog],
      cwd: dir,
      env: { DENO_DIR: `${dir}/deno` },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(r.stderr);
    assertEquals(r.code, 0, stderr);
    const out = JSON.parse(new TextDecoder().decode(r.stdout)) as string[];
    const grant = (p: string) =>
      new RegExp(
        `^cannot load scheduler plugin ${p.replaceAll(".", "\\.")}: importing a remote plugin ` +
          `needs an explicit grant for ${server.host.replaceAll(".", "\\.")} `,
      );
    assertEquals(out.slice(0, 2), ["loaded rr", "loaded credit"]);
    match(out[2], grant(`${base}elsewhere/rr.ts`));
    match(out[3], grant(`${base}plugins/../elsewhere/rr.ts`)); // normalised: not under plugins/
    match(out[4], grant(`${base}plugins-extra/rr.ts`));
    assertEquals(out[5], "loaded rr");
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});
