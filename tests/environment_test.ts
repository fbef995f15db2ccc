/** Missing KVM or C compiler: clear errors that say what to install or enable. */
import { match, ok as assert, rejects } from "node:assert/strict";
import { KvmUnavailableError, Vmm } from "../mod.ts";
import { test } from "./helpers/deadline.ts";

test("no /dev/kvm: a clear error saying to enable KVM", async () => {
  await rejects(
    () => Vmm.create({ kvmPath: "/nonexistent/kvm" }),
    (e: Error) => {
      assert(e instanceof KvmUnavailableError, String(e));
      match(e.message, /does not exist: enable KVM/);
      return true;
    },
  );
});

test("no C compiler: building the shim says what to install", async () => {
  const cache = await Deno.makeTempDir();
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `import { buildShim } from ${
          JSON.stringify(new URL("../ffi/shim.ts", import.meta.url).href)
        };
         try { await buildShim(); console.log("built"); }
         catch (e) { console.log(e.name + ": " + e.message); }`,
      ],
      env: { XDG_CACHE_HOME: cache, CC: "no-such-cc-deno-vmm" },
      stdout: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    match(text, /^ShimBuildError: no C compiler: 'no-such-cc-deno-vmm' was not found/);
    match(text, /apt-get install gcc/);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});
