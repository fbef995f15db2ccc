/**
 * {@linkcode ProcessSandboxPolicy}: a plugin running in a child `deno` process, called
 * synchronously over two pipes (`pipe_frame.ts`), and ended with SIGKILL.
 *
 * The child (`sandbox_child.ts`) runs `deno run --no-config --no-npm --no-remote --cached-only
 * --no-prompt --unstable-worker-options` with no permission but reading the plugin's own file (importing it needs it, as
 * in the Worker sandbox; `allowRead` adds more) and, for a remote plugin, importing from the
 * hosts granted (`allowImport`, then without `--no-remote` and `--cached-only`). `--no-npm`
 * closes what Worker permissions leave open: a Worker's plugin can still `import("npm:...")`,
 * since Deno's Worker permissions do not cover npm packages. SES is loaded from its file in
 * Deno's npm cache, before the child's entry. The child starts fair-class, with an empty
 * signal mask and only its standard file descriptors; its stderr is this process's.
 *
 * The core's side (this module) never blocks longer than the budget: it writes a batch's frame
 * (non-blocking, a full pipe is the child's fault), then waits in `poll(2)` on the reply pipe,
 * a quarter budget at a time, reading what came, with the Worker sandbox's budget rules
 * (`waitWithinBudget`, the child's main thread's CPU time from `/proc/PID/task/PID/schedstat`).
 * A reply frame is hostile input: its header is checked against the frame's bounds
 * (`decodeReplyHeader`), its sequence number must be the pending request's, and it is copied
 * into the core's own copy of the channel, which the same reader as the Worker's reads
 * (`reply_reader.ts`). Bytes that arrive between requests are a corrupted channel too. A
 * timeout, a corrupted channel or `close` ends the child with SIGKILL and reaps it at once.
 *
 * Needs the `run` and `ffi` permissions (the scheduler core has them).
 *
 * @module
 */
import {
  type ChannelViews,
  createLocalChannel,
  H_NOPS,
  H_REP,
  H_REQ,
  H_REQ_BYTES,
  H_SPIN_NS,
  ST_FAULT,
  ST_OK,
} from "./channel.ts";
import { pluginDisplayName, PluginLoadError } from "./load.ts";
import { PipeProcess } from "./pipe_process.ts";
import {
  decodeReply,
  decodeReplyHeader,
  encodeRequest,
  type FrameBuffer,
  type HelloJson,
  REP_HEADER,
  replyBuffer,
  requestBuffer,
} from "./pipe_frame.ts";
import { prevSeq } from "./reply_reader.ts";
import { initOrFail, pluginAccess, type SandboxOptions } from "./sandbox.ts";
import { BatchPolicy, timeoutFault, waitWithinBudget } from "./sandbox_port.ts";
import { DEFAULT_BUDGET_NS, PolicyFault } from "./watchdog.ts";

const CHILD_URL = new URL("./sandbox_child.ts", import.meta.url);

/** The SES version range the sandboxes use (as `realm.ts` imports it). */
const SES_MAJOR = 2;
const SES_MIN_MINOR = 3;

/** Deno's cache directory: `DENO_DIR`, else `$XDG_CACHE_HOME/deno` or `~/.cache/deno`. */
function denoDir(): string {
  const env = (k: string) => {
    try {
      return Deno.env.get(k);
    } catch {
      return undefined;
    }
  };
  return env("DENO_DIR") ?? `${env("XDG_CACHE_HOME") ?? `${env("HOME") ?? ""}/.cache`}/deno`;
}

/** The bundled SES module in Deno's npm cache (the newest 2.x >= 2.3), or null. */
function findSes(): string | null {
  const root = `${denoDir()}/npm`;
  let best: { v: number[]; path: string } | null = null;
  try {
    for (const registry of Deno.readDirSync(root)) {
      const dir = `${root}/${registry.name}/ses`;
      let versions: Deno.DirEntry[];
      try {
        versions = [...Deno.readDirSync(dir)];
      } catch {
        continue;
      }
      for (const e of versions) {
        const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(e.name);
        if (m === null) continue;
        const v = [Number(m[1]), Number(m[2]), Number(m[3])];
        if (v[0] !== SES_MAJOR || v[1] < SES_MIN_MINOR) continue;
        const path = `${dir}/${e.name}/dist/ses.mjs`;
        try {
          Deno.statSync(path);
        } catch {
          continue;
        }
        const newer = best === null || v[0] - best.v[0] || v[1] - best.v[1] || v[2] - best.v[2];
        if (best === null || (typeof newer === "number" && newer > 0)) best = { v, path };
      }
    }
  } catch {
    return null;
  }
  return best?.path ?? null;
}

/**
 * The file URL of SES's bundled module, which the child imports before anything else (it runs
 * with npm turned off). Caches the package first (`deno cache npm:ses`) if it is not there yet.
 */
export async function sesModuleUrl(): Promise<string> {
  let path = findSes();
  if (path === null) {
    await new Deno.Command(Deno.execPath(), {
      args: ["cache", "--no-config", `npm:ses@^${SES_MAJOR}.${SES_MIN_MINOR}.0`],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    path = findSes();
  }
  if (path === null) {
    throw new Error(
      `SES (npm:ses@^${SES_MAJOR}.${SES_MIN_MINOR}) is not in Deno's cache (${denoDir()}/npm) ` +
        "and could not be fetched",
    );
  }
  return new URL(`file://${path}`).href;
}

/** The `deno run` arguments of a child for the plugin `url` (see the module documentation). */
export function childArgs(
  o: { url: URL; read: string[]; imports: string[] | false; ses: string; debug: boolean },
): string[] {
  const remoteHosts = o.imports === false ? [] : [...o.imports];
  // This code itself came from a URL (mod.ts run remotely): the child's entry comes from there.
  if (CHILD_URL.protocol !== "file:") remoteHosts.push(CHILD_URL.host);
  for (const path of o.read) {
    if (path.includes(",")) throw new PluginLoadError(o.url.href, `a read grant with a comma`);
  }
  const main = `import ${JSON.stringify(o.ses)};\nimport ${JSON.stringify(CHILD_URL.href)};\n`;
  return [
    "run",
    "--no-config",
    "--no-npm",
    "--no-prompt",
    // A plugin may start a Worker; with this flag, one that asks for more permissions than
    // the child's is refused ("Can't escalate"), as in the Worker sandbox, instead of ending
    // the child.
    "--unstable-worker-options",
    ...(remoteHosts.length > 0
      ? [`--allow-import=${remoteHosts.join(",")}`]
      : ["--no-remote", "--cached-only"]),
    ...(o.read.length > 0 ? [`--allow-read=${o.read.join(",")}`] : []),
    `data:application/javascript;base64,${btoa(main)}`,
    o.url.href,
    o.debug ? "debug-channel" : "",
  ];
}

/** The child's environment: this process's, no update check, no colours. */
function childEnv(): Record<string, string> {
  let env: Record<string, string> = {};
  try {
    env = Deno.env.toObject();
  } catch {
    // no env permission: the child finds Deno's cache from HOME alone, unset here
  }
  return { ...env, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" };
}

/** Reads one reply frame from `p` into `f`, asynchronously (start-up only). */
async function readHello(p: PipeProcess, f: FrameBuffer, timeoutMs: number): Promise<string> {
  const end = performance.now() + timeoutMs;
  let got = 0, need = REP_HEADER;
  for (;;) {
    const r = p.read(f.bytes.subarray(got, need), 0);
    if (r === "eof") {
      p.kill();
      throw new Error(`the sandbox process ended before the plugin loaded (status ${p.status})`);
    }
    if (r === "timeout") {
      if (performance.now() >= end) throw new Error(`not loaded within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 1));
      continue;
    }
    got += r;
    if (got === REP_HEADER && need === REP_HEADER) {
      const h = decodeReplyHeader(f);
      if (typeof h === "string") throw new Error(`corrupted channel: ${h}`);
      if (h.seq !== 0 || h.words !== 0 || (h.status !== ST_OK && h.status !== ST_FAULT)) {
        throw new Error("corrupted channel: not a start-up frame");
      }
      need = h.length;
    }
    if (got === need) {
      const h = decodeReplyHeader(f) as Exclude<ReturnType<typeof decodeReplyHeader>, string>;
      const text = new TextDecoder().decode(f.bytes.subarray(REP_HEADER, REP_HEADER + h.bytes));
      let json: HelloJson;
      try {
        json = JSON.parse(text);
      } catch {
        throw new Error("corrupted channel: the start-up frame is not JSON");
      }
      if (h.status === ST_FAULT) throw new Error(String(json?.error ?? "unknown error"));
      return typeof json?.name === "string" ? json.name.slice(0, 200) : "";
    }
  }
}

/** A plugin in a child process; see the module documentation. */
export class ProcessSandboxPolicy extends BatchPolicy {
  #proc: PipeProcess;
  #budgetMs: number;
  readonly #req: FrameBuffer = requestBuffer();
  readonly #rep: FrameBuffer = replyBuffer();
  #replyWords = 4;

  private constructor(
    proc: PipeProcess,
    ch: ChannelViews,
    name: string,
    url: string,
    options: SandboxOptions,
  ) {
    super(ch, name, url, options.params ?? {});
    this.#proc = proc;
    this.#budgetMs = (options.budgetNs ?? DEFAULT_BUDGET_NS) / 1e6;
  }

  /**
   * Starts the child, which imports the plugin and checks its shape (and runs `init` if `slots`
   * is given). Rejects with a {@linkcode PluginLoadError} naming the plugin when the module
   * cannot be imported, is not a plugin, or its `init` fails. `spinNs` is ignored.
   */
  static async create(options: SandboxOptions): Promise<ProcessSandboxPolicy> {
    const spec = String(options.plugin);
    const { url, read, imports } = pluginAccess(options);
    const args = childArgs({
      url,
      read,
      imports,
      ses: await sesModuleUrl(),
      debug: options.debugChannel === true,
    });
    const proc = PipeProcess.spawn({ path: Deno.execPath(), args, env: childEnv() });
    let name: string;
    try {
      name = await readHello(proc, replyBuffer(), options.loadTimeoutMs ?? 10_000);
    } catch (e) {
      proc.kill();
      throw new PluginLoadError(spec, (e as Error).message);
    }
    const port = new ProcessSandboxPolicy(
      proc,
      createLocalChannel(),
      name || pluginDisplayName(null, url.href),
      url.href,
      options,
    );
    initOrFail(port, options, spec);
    return port;
  }

  /** The child's pid, which is also its main thread's id (the plugin's thread). */
  get threadId(): number {
    return this.#proc.pid;
  }

  /** The child's pid. */
  get pid(): number {
    return this.#proc.pid;
  }

  #crash(hook: string): PolicyFault {
    this.kill("the sandbox process ended");
    return new PolicyFault("crash", hook, `the sandbox process of ${this.name} ended`);
  }

  #corrupt(hook: string, what: string): PolicyFault {
    return new PolicyFault("corrupted channel", hook, `corrupted channel: ${what}`);
  }

  /**
   * Writes the request's frame, then reads its reply frame within the budget and copies it
   * into the core's channel for the reader.
   */
  protected exchange(hook: string): void {
    const proc = this.#proc, sent = this.sent, hdr = this.ch.hdr;
    if (proc.pending()) {
      const r = proc.read(this.#rep.bytes.subarray(0, 1), 0);
      if (r === "eof") throw this.#crash(hook);
      throw this.#corrupt(hook, "the sandbox wrote between requests");
    }
    hdr[H_REQ] = sent.seq;
    hdr[H_REP] = prevSeq(sent.seq);
    hdr[H_NOPS] = sent.nops;
    hdr[H_REQ_BYTES] = sent.bytes;
    hdr[H_SPIN_NS] = sent.spinNs;
    const len = encodeRequest(this.#req, this.ch, sent.seq, sent.nops, sent.bytes);
    const t0 = performance.now();
    if (!proc.writeAll(this.#req.bytes.subarray(0, len), this.#budgetMs)) {
      if (proc.exited()) throw this.#crash(hook);
      this.kill("not reading its channel");
      throw new PolicyFault(
        "timeout",
        hook,
        `${hook}: the sandbox process did not read its request within ${this.#budgetMs} ms`,
      );
    }
    const f = this.#rep;
    let got = 0, need = REP_HEADER;
    let header: Exclude<ReturnType<typeof decodeReplyHeader>, string> | null = null;
    const answered = (): boolean => {
      for (;;) {
        if (got === need) return true;
        const r = proc.read(f.bytes.subarray(got, need), 0);
        if (r === "timeout") return false;
        if (r === "eof") throw this.#crash(hook);
        got += r;
        if (header === null && got === REP_HEADER) {
          const h = decodeReplyHeader(f);
          if (typeof h === "string") throw this.#corrupt(hook, h);
          if (h.seq !== sent.seq) {
            throw this.#corrupt(hook, `reply sequence ${h.seq}, expected ${sent.seq}`);
          }
          header = h;
          need = h.length;
        }
      }
    };
    // The reply takes a wake-up of the child at least: sleep until it comes (a quarter budget
    // at most) rather than try a read first.
    proc.waitReadable(this.#budgetMs / 4);
    const overrun = answered() ? null : waitWithinBudget({
      budgetMs: this.#budgetMs,
      answered,
      sleep: (ms) => proc.waitReadable(ms),
      cpuNs: () => proc.runNs(),
    }, t0);
    if (overrun !== null) {
      this.kill(`no answer within ${overrun.waitedMs.toFixed(1)} ms`);
      throw timeoutFault(hook, this.#budgetMs, overrun, "its process was killed");
    }
    const h = header!;
    decodeReply(f, h, this.ch, this.#replyWords);
    this.#replyWords = Math.max(4, h.words);
    hdr[H_REP] = sent.seq;
  }

  /** Ends the child with SIGKILL and reaps it. */
  protected kill(why: string): void {
    this.dead ??= why;
    this.#proc.kill();
  }

  /** Ends the child (SIGKILL; it holds no state worth a goodbye) and reaps it. Idempotent. */
  close(): void {
    this.dead ??= "closed";
    this.#proc.kill();
  }
}
