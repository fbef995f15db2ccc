/** Test helper: run the CLI (`mod.ts`) in a subprocess. */
const MOD = new URL("../../mod.ts", import.meta.url).pathname;

/** Output of one CLI run. */
export interface CliResult {
  /** Exit status. */
  code: number;
  /** stdout text. */
  stdout: string;
  /** stderr text. */
  stderr: string;
}

/** Runs `deno run -A mod.ts ...args` (or another module) and collects its output. */
export async function runCli(args: string[], module = MOD): Promise<CliResult> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-worker-options", module, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}
