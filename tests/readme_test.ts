/**
 * README's TypeScript blocks cannot rot: each is type-checked as a module at the repository's
 * root (where its `./mod.ts` and `./testing.ts` imports point), and the plugin test it shows is run.
 */
import { ok as assert } from "node:assert/strict";
import { runDeno } from "./helpers/cli.ts";
import { test } from "./helpers/deadline.ts";

const ROOT = new URL("../", import.meta.url);

/** The ```ts blocks of a Markdown text. */
export function tsBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
}

test("README: every TypeScript block type-checks; the plugin test it shows passes", async () => {
  const blocks = tsBlocks(await Deno.readTextFile(new URL("README.md", ROOT)));
  assert(blocks.length >= 3, `only ${blocks.length} blocks`);
  const files: string[] = [];
  try {
    for (const [i, code] of blocks.entries()) {
      const path = new URL(`.readme_block_${i}_test.ts`, ROOT).pathname;
      // A module of its own (top-level await, no globals shared between blocks).
      await Deno.writeTextFile(path, `${code}\nexport {};\n`);
      files.push(path);
    }
    const check = await runDeno(["check", ...files], ROOT.pathname);
    assert(check.success, check.text);
    const runnable = files.filter((_, i) => blocks[i].includes('from "./testing.ts"'));
    assert(runnable.length >= 1, "README shows no plugin test");
    for (const f of runnable) {
      const run = await runDeno(["run", "-A", "--unstable-worker-options", f], ROOT.pathname);
      assert(run.success, run.text);
    }
  } finally {
    for (const f of files) await Deno.remove(f).catch(() => {});
  }
});
