/** Importing mod.ts by URL from a local HTTP server (127.0.0.1) and booting hello. */
import { deepStrictEqual as assertEquals, match } from "node:assert/strict";
import { runCli } from "./helpers/cli.ts";
import { KERNEL, requireKernel } from "./helpers/vmm.ts";
import { test } from "./helpers/deadline.ts";

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
