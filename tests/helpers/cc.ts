/** Test helper: compile a C program with the host compiler and return its stdout. */
export async function compileAndRun(source: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-cc-" });
  try {
    await Deno.writeTextFile(`${dir}/t.c`, source);
    const cc = await new Deno.Command("cc", {
      args: ["-O0", "-o", `${dir}/t`, `${dir}/t.c`],
      stderr: "piped",
    }).output();
    if (!cc.success) throw new Error(new TextDecoder().decode(cc.stderr));
    const run = await new Deno.Command(`${dir}/t`, { stdout: "piped" }).output();
    if (!run.success) throw new Error(`test program failed: ${run.code}`);
    return new TextDecoder().decode(run.stdout);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
