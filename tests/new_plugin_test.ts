/** `new-plugin`: the skeleton and its test pass as written; bad names and existing files are refused. */
import { deepStrictEqual as assertEquals, match, ok as assert } from "node:assert/strict";
import { runCli, runDeno } from "./helpers/cli.ts";
import { test } from "./helpers/deadline.ts";
import { importBase } from "../src/cli/new_plugin.ts";

test("new-plugin writes a plugin and a test that pass as generated, outside the repo", async () => {
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-plugin-" });
  try {
    let r = await runCli(["new-plugin", "fair_fifo", "--dir", dir]);
    assertEquals(r.code, 0, r.stderr);
    match(r.stdout, /deno test -A --unstable-worker-options .*fair_fifo_test\.ts/);
    const plugin = await Deno.readTextFile(`${dir}/fair_fifo.ts`);
    match(plugin, /^import type \{ .*SchedulerPlugin.* \} from "\.\.?\/.*mod\.ts";$/m);
    // The generated test, run as a user would: type-checked, sandboxed, in the simulator.
    const run = await runDeno(
      ["test", "-A", "--unstable-worker-options", `${dir}/fair_fifo_test.ts`],
      dir,
    );
    assert(run.success, run.text);
    match(run.text, /ok \| 1 passed \| 0 failed/);
    // Nothing is overwritten; bad names are named.
    r = await runCli(["new-plugin", "fair_fifo", "--dir", dir]);
    assertEquals(r.code, 2);
    match(r.stderr, /fair_fifo\.ts exists: nothing written/);
    assertEquals(await Deno.readTextFile(`${dir}/fair_fifo.ts`), plugin);
    r = await runCli(["new-plugin", "My-Plugin", "--dir", dir]);
    assertEquals(r.code, 2);
    match(r.stderr, /NAME must be lower case letters, digits and _ .*got 'My-Plugin'/);
    r = await runCli(["new-plugin", "x", "--dir", `${dir}/missing`]);
    assertEquals(r.code, 2);
    match(r.stderr, /--dir .*missing: no such directory/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

test("the generated files import deno-vmm by relative path from a clone, by URL otherwise", () => {
  const dir = Deno.makeTempDirSync();
  try {
    Deno.mkdirSync(`${dir}/repo/sub`, { recursive: true });
    Deno.mkdirSync(`${dir}/mine`);
    const root = new URL(`file://${Deno.realPathSync(dir)}/repo/`);
    assertEquals(importBase(`${dir}/mine`, root), "../repo/");
    assertEquals(importBase(`${dir}/repo/sub`, root), "../");
    assertEquals(importBase(`${dir}/repo`, root), "./");
    assertEquals(
      importBase(dir, new URL("https://example.com/deno-vmm/")),
      "https://example.com/deno-vmm/",
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
