/**
 * The README's quick start, as written, with nothing cached: `deno task demo` in a fresh
 * `git clone` of this repository's HEAD, and the one-line run of `mod.ts` from a URL (this tree,
 * served on 127.0.0.1). Each child gets an empty deno-vmm cache (`XDG_CACHE_HOME`) and an empty
 * Deno cache (`DENO_DIR`), so the shim and the guest kernel are built on first use and, from the
 * URL, every module and source file is fetched.
 *
 * Each test takes 5-6 s here (a cold start with every module transpiled, the shim and kernel
 * builds, under a second together, and the demo's own seconds) on a loaded 2-CPU machine, so
 * the default deadline (120 s) is ample.
 */
import { deepStrictEqual as assertEquals, match, ok as assert } from "node:assert/strict";
import { test } from "./helpers/deadline.ts";
import { serveTree } from "./helpers/serve.ts";

const ROOT = new URL("../", import.meta.url);

/** The command lines of the code blocks under README's "Quick start", comments removed. */
async function firstSteps(): Promise<string[][]> {
  const readme = await Deno.readTextFile(new URL("README.md", ROOT));
  const at = readme.indexOf("\n## Quick start\n");
  assert(at >= 0, "README has no 'Quick start' section");
  const section = readme.slice(at + 1, readme.indexOf("\n## ", at + 1));
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) =>
    m[1].split("\n").map((l) => l.replace(/#.*/, "").trim()).filter((l) => l !== "")
  );
}

/** Runs `args` (`deno ...`) in `cwd` with empty caches under `tmp`; output and wall time. */
async function runCold(args: string[], cwd: string, tmp: string) {
  assertEquals(args[0], "deno");
  const env = { XDG_CACHE_HOME: `${tmp}/cache`, DENO_DIR: `${tmp}/deno`, NO_COLOR: "1" };
  const started = performance.now();
  const out = await new Deno.Command(Deno.execPath(), {
    args: args.slice(1),
    cwd,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  const r = {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
    seconds: (performance.now() - started) / 1000,
  };
  console.log(`${args.join(" ")}: exit ${r.code} in ${r.seconds.toFixed(1)} s`);
  return r;
}

/** The demo's closing table (on KVM, under credit): a row for each of its three VMs. */
function assertDemoRan(stdout: string, stderr: string) {
  match(stdout, /^demo \(kvm, credit/m, stderr);
  for (const vm of ["echo", "heavy", "light"]) match(stdout, new RegExp(`^${vm}\\s`, "m"), stdout);
}

/** The cache holds one built shim and one built kernel, and nothing half-built. */
async function assertBuiltOnce(cache: string) {
  const names = [...Deno.readDirSync(`${cache}/deno-vmm`)].map((e) => e.name).sort();
  assertEquals(names.filter((n) => /^kernel-[0-9a-f]{16}\.elf$/.test(n)).length, 1, `${names}`);
  assertEquals(names.filter((n) => /^libshim-[0-9a-f]{16}\.so$/.test(n)).length, 1, `${names}`);
  assertEquals(names.filter((n) => n.includes("tmp") || n.includes("build-")), [], `${names}`);
  const elf = names.find((n) => n.startsWith("kernel-"))!;
  const magic = (await Deno.readFile(`${cache}/deno-vmm/${elf}`)).subarray(0, 4);
  assertEquals([...magic], [0x7f, 0x45, 0x4c, 0x46]); // "\x7fELF"
}

test("quick start: `deno task demo` in a fresh clone builds what it needs and runs", async () => {
  const [fromClone] = await firstSteps();
  assertEquals(fromClone, ["deno task demo", "deno task test"]);
  const tmp = await Deno.makeTempDir({ prefix: "deno-vmm-clone-" });
  try {
    const git = async (...args: string[]) => {
      const out = await new Deno.Command("git", { args, stdout: "piped", stderr: "piped" })
        .output();
      assert(out.success, `git ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
      return new TextDecoder().decode(out.stdout).trim();
    };
    const head = await git("-C", ROOT.pathname, "rev-parse", "HEAD");
    const clone = `${tmp}/deno-vmm`;
    await git("clone", "--quiet", "--no-checkout", ROOT.pathname, clone);
    await git("-C", clone, "checkout", "--quiet", head);
    const r = await runCold([...fromClone[0].split(" "), "--seconds", "3"], clone, tmp);
    assertEquals(r.code, 0, r.stderr);
    assertDemoRan(r.stdout, r.stderr);
    await assertBuiltOnce(`${tmp}/cache`);
    // Built on first use into the cache, not by `deno task build` (make).
    await Deno.stat(`${clone}/guests/build`).then(
      () => assert(false, "guests/build exists: the kernel was not built on first use"),
      () => {},
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

test("quick start: the one-line run from a URL fetches, builds and runs the demo", async () => {
  const [, fromUrl] = await firstSteps();
  assertEquals(fromUrl.length, 1, `one command: ${fromUrl}`);
  const words = fromUrl[0].split(" ");
  const at = words.findIndex((w) => /^https:\/\/\S+\/mod\.ts$/.test(w));
  assert(at > 0, `no https://.../mod.ts in '${fromUrl[0]}'`);
  assertEquals(words.at(-1), "demo");
  const server = serveTree(ROOT);
  const tmp = await Deno.makeTempDir({ prefix: "deno-vmm-url-" });
  try {
    words[at] = `${server.base}mod.ts`;
    // In an empty directory: no clone, no deno.json.
    await Deno.mkdir(`${tmp}/cwd`);
    const r = await runCold([...words, "--seconds", "2"], `${tmp}/cwd`, tmp);
    assertEquals(r.code, 0, r.stderr);
    assertDemoRan(r.stdout, r.stderr);
    await assertBuiltOnce(`${tmp}/cache`);
    const fetched = new Set(server.requests.map((q) => q.path));
    // The built-in plugin loaded from beside mod.ts with no grant, the sources came over HTTP.
    for (const p of ["/plugins/credit.ts", "/ffi/shim.c", "/guests/sources.mk"]) {
      assert(fetched.has(p), `${p} was not fetched over HTTP`);
    }
    assert(fetched.has("/guests/kernel/entry.S") && fetched.has("/guests/user/echo.c"));
    assertEquals(server.requests.filter((q) => q.status !== 200), []);
  } finally {
    await server.close();
    await Deno.remove(tmp, { recursive: true });
  }
});
