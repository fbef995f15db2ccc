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

/** Output of one `deno` run: its status and stdout then stderr as one text (no colours). */
export interface DenoRun {
  /** Exit status. */
  code: number;
  /** Exit status 0. */
  success: boolean;
  /** stdout, then stderr. */
  text: string;
}

/** Runs `deno ...args` in `cwd` with NO_COLOR and collects its output. */
export async function runDeno(args: string[], cwd: string): Promise<DenoRun> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    success: out.success,
    text: dec.decode(out.stdout) + dec.decode(out.stderr),
  };
}
