/**
 * Host-side fuzzing of the control API (`src/api/`) with fast-check, on a VMM with a credit
 * scheduler and two running VMs: `keep`, which no request names, and `victim`, which requests
 * may pause, resume or stop. Random methods, paths (known segments, unknown ones, bad
 * percent-escapes, long ones) and bodies (objects with the API's keys and odd values, any JSON,
 * truncated JSON, invalid UTF-8, bodies over the limit) go through the request handler; over the
 * Unix socket, hundreds of concurrent clients, slow and abandoned connections and a chunked body
 * that never ends. Every answer is a 2xx or a 4xx with a JSON `error`, never a 5xx; afterwards
 * `keep` still runs and has made progress, and the server still answers.
 *
 * @module
 */
// deno-lint-ignore no-import-prefix
import fc from "npm:fast-check@^4";
import { Vmm } from "../mod.ts";
import type { Vm } from "../mod.ts";
import { createApiHandler } from "../src/api/routes.ts";
import { type ApiServer, startApiServer } from "../src/api/server.ts";
import { MAX_BODY_BYTES } from "../src/api/http.ts";
import { oddValue } from "./fuzz_inputs.ts";

const PLUGIN = new URL("../plugins/credit.ts", import.meta.url).href;

/** One generated request. */
export interface FuzzRequest {
  /** HTTP method. */
  method: string;
  /** Path and query, starting with `/`. */
  path: string;
  /** Body bytes, or null for none. */
  body: Uint8Array | null;
}

const SEGMENTS = [
  "vms",
  "victim",
  "nosuch",
  "sched",
  "params",
  "policy",
  "eject",
  "state",
  "metrics",
  "",
  ".",
  "..",
  "%zz",
  "%2F",
  "%00",
  "%E0%A4%A",
  "a".repeat(300),
];
// Only values that resolve locally or not at all: a plugin is never fetched from the network.
const PLUGINS = ["builtin:rr", "builtin:credit", "plugins/rr.ts", "nosuch.ts", "", "/dev/null"];

/** The request arbitrary. */
export function fuzzRequest(): fc.Arbitrary<FuzzRequest> {
  const enc = new TextEncoder();
  const segment = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...SEGMENTS) },
    { weight: 1, arbitrary: fc.string({ maxLength: 12 }).map(encodeURIComponent) },
  );
  const bodyObject = fc.dictionary(
    fc.constantFrom("state", "target", "params", "plugin", "reason", "weight", "extra"),
    fc.oneof(
      fc.constantFrom("paused", "running", "stopped", "victim", "nosuch", ...PLUGINS),
      fc.dictionary(
        fc.constantFrom("weight", "cap", "budget_ms", "period_ms", "tslice_ms", "x"),
        oddValue(),
      ),
      oddValue(),
    ),
    { maxKeys: 4 },
  ).map((o) => {
    // `keep` is never named, and `*` (every VM) is left out for the same reason.
    if (o.target === "*" || o.target === "keep") o.target = "victim";
    return o;
  });
  const body = fc.oneof(
    { weight: 2, arbitrary: fc.constant(null) },
    { weight: 5, arbitrary: bodyObject.map((o) => enc.encode(JSON.stringify(o))) },
    {
      weight: 1,
      arbitrary: fc.jsonValue({ maxDepth: 3 }).map((j) => enc.encode(JSON.stringify(j) ?? "")),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(bodyObject, fc.nat()).map(([o, n]) => {
        const t = JSON.stringify(o);
        return enc.encode(t.slice(0, n % (t.length + 1))); // truncated
      }),
    },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }) }, // any bytes, invalid UTF-8 too
    {
      weight: 1,
      arbitrary: fc.constantFrom(MAX_BODY_BYTES + 1, 4 * MAX_BODY_BYTES).map((n) =>
        new Uint8Array(n).fill(0x20)
      ),
    },
  );
  return fc.record({
    method: fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom("GET", "PUT", "POST", "HEAD") },
      { weight: 1, arbitrary: fc.constantFrom("DELETE", "PATCH", "OPTIONS", "get", "FOO") },
    ),
    segs: fc.array(segment, { maxLength: 4 }),
    query: fc.option(fc.string({ maxLength: 10 }).map(encodeURIComponent), { nil: null }),
    body,
  }).map(({ method, segs, query, body }) => ({
    method,
    path: "/" + segs.join("/") + (query === null ? "" : `?${query}`),
    body: ["GET", "HEAD"].includes(method.toUpperCase()) ? null : body,
  }));
}

/** Checks one answer: a 2xx, or a 4xx with a JSON `error` (HEAD: no body to check). */
export async function checkAnswer(req: FuzzRequest, res: Response): Promise<number> {
  const text = await res.text();
  const where = () => `${req.method} ${req.path} -> ${res.status}: ${text.slice(0, 300)}`;
  if (res.status >= 500 || res.status < 200 || (res.status >= 300 && res.status < 400)) {
    throw new Error(`unexpected status: ${where()}`);
  }
  if (res.status >= 400 && req.method !== "HEAD") {
    let err: unknown;
    try {
      err = JSON.parse(text).error;
    } catch {
      throw new Error(`a ${res.status} without a JSON body: ${where()}`);
    }
    if (typeof err !== "string" || err === "") throw new Error(`no error message: ${where()}`);
  }
  return res.status;
}

/** A VMM with a scheduler and the two VMs the API fuzz needs. */
export interface ApiFixture {
  /** The VMM. */
  vmm: Vmm;
  /** The VM no request names. */
  keep: Vm;
  /** Closes everything. */
  close(): Promise<void>;
}

/** Starts the fixture: credit on one slot, `keep` and `victim` spinning. */
export async function apiFixture(): Promise<ApiFixture> {
  const vmm = await Vmm.create({ scheduler: { plugin: PLUGIN, slots: 1 } });
  try {
    const keep = await vmm.createVm({ name: "keep", cmdline: "workload=spin seconds=0" });
    const victim = await vmm.createVm({ name: "victim", cmdline: "workload=spin seconds=0" });
    await keep.start();
    await victim.start();
    return { vmm, keep, close: () => vmm.close() };
  } catch (e) {
    await vmm.close();
    throw e;
  }
}

/** vCPU 0's iterations of `vm`. */
export function progress(vm: Vm): bigint {
  return vm.stats()?.vcpus[0]?.iterations ?? 0n;
}

/** Counts of statuses. */
export type StatusCounts = Record<string, number>;

/** Runs `numRuns` generated requests through the handler in-process; returns status counts. */
export async function fuzzHandler(
  f: ApiFixture,
  o: { numRuns: number; seed: number },
): Promise<StatusCounts> {
  const handler = createApiHandler(f.vmm);
  const counts: StatusCounts = {};
  await fc.assert(
    fc.asyncProperty(fuzzRequest(), async (r) => {
      const req = new Request(`http://localhost${r.path}`, {
        method: r.method,
        body: r.body as BodyInit | null,
      });
      const status = await checkAnswer(r, await handler(req));
      counts[status] = (counts[status] ?? 0) + 1;
    }),
    { numRuns: o.numRuns, seed: o.seed },
  );
  return counts;
}

/** An HTTP client on the server's socket. */
function client(path: string): Deno.HttpClient {
  return Deno.createHttpClient({ proxy: { transport: "unix", path } });
}

/** `clients` concurrent clients, each sending `each` generated requests over the socket. */
export async function fuzzConcurrent(
  server: ApiServer,
  o: { clients: number; each: number; seed: number },
): Promise<StatusCounts> {
  const counts: StatusCounts = {};
  const reqs = fc.sample(fuzzRequest(), { numRuns: o.clients * o.each, seed: o.seed });
  await Promise.all(Array.from({ length: o.clients }, async (_, c) => {
    const http = client(server.path);
    try {
      for (let i = 0; i < o.each; i++) {
        const r = reqs[c * o.each + i];
        const res = await fetch(`http://localhost${r.path}`, {
          method: r.method,
          body: r.body as BodyInit | null,
          client: http,
        });
        const status = await checkAnswer(r, res);
        counts[status] = (counts[status] ?? 0) + 1;
      }
    } finally {
      http.close();
    }
  }));
  return counts;
}

const enc = new TextEncoder();

/** Connections that send a request a few bytes at a time, `delayMs` apart; all get answers. */
export async function slowClients(
  server: ApiServer,
  o: { clients: number; delayMs: number },
): Promise<number[]> {
  const request = enc.encode(
    'PUT /sched/params HTTP/1.1\r\nHost: x\r\nContent-Length: 36\r\nConnection: close\r\n\r\n{"target":"nosuch","params":{"x":1}}',
  );
  return await Promise.all(Array.from({ length: o.clients }, async () => {
    const conn = await Deno.connect({ transport: "unix", path: server.path });
    try {
      for (let i = 0; i < request.length; i += 7) {
        await conn.write(request.subarray(i, i + 7));
        await new Promise((r) => setTimeout(r, o.delayMs));
      }
      const answer = await readAll(conn);
      return Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0);
    } finally {
      conn.close();
    }
  }));
}

async function readAll(conn: Deno.Conn): Promise<string> {
  const buf = new Uint8Array(65536);
  let text = "";
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) return text;
    text += new TextDecoder().decode(buf.subarray(0, n));
  }
}

/**
 * Connections given up halfway: headers cut short, a body cut short, nothing at all. Returns how
 * many were opened and dropped.
 */
export async function abandonedClients(server: ApiServer, n: number): Promise<number> {
  const parts = [
    "",
    "GET /vms HTT",
    'PUT /vms/victim/state HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"sta',
    'POST /sched/eject HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"rea',
  ];
  const conns = await Promise.all(
    Array.from({ length: n }, () => Deno.connect({ transport: "unix", path: server.path })),
  );
  await Promise.all(conns.map((c, i) => c.write(enc.encode(parts[i % parts.length]))));
  await new Promise((r) => setTimeout(r, 50));
  for (const c of conns) c.close();
  return conns.length;
}

/**
 * Sends a chunked body that does not end, up to `maxBytes`; returns the status the server
 * answered and how many body bytes had been sent when it did (the server must not wait for
 * the end: it refuses once past MAX_BODY_BYTES).
 */
export async function endlessBody(
  server: ApiServer,
  maxBytes: number,
): Promise<{ status: number; sentBytes: number }> {
  const conn = await Deno.connect({ transport: "unix", path: server.path });
  let answered = false;
  const answer = (async () => {
    const buf = new Uint8Array(4096);
    let text = "";
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) return text;
        answered = true; // the first bytes of the answer: stop sending
        text += new TextDecoder().decode(buf.subarray(0, n));
      }
    } catch {
      return text;
    }
  })();
  let sent = 0;
  try {
    await conn.write(
      enc.encode(
        "PUT /sched/params HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
      ),
    );
    const chunk = enc.encode(`10000\r\n${" ".repeat(0x10000)}\r\n`);
    while (!answered && sent < maxBytes) {
      await conn.write(chunk);
      sent += 0x10000;
    }
  } catch {
    // The server closed the connection after answering: writing fails, as it should.
  }
  const text = await answer.catch(() => "");
  conn.close();
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), sentBytes: sent };
}

/** Starts the API server of `f` on a fresh socket path. */
export async function serve(f: ApiFixture): Promise<{ server: ApiServer; dir: string }> {
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-apifuzz-" });
  const server = await startApiServer(f.vmm, `${dir}/api.sock`);
  return { server, dir };
}

/** GET / over the socket: the server still answers. */
export async function stillAnswers(server: ApiServer): Promise<boolean> {
  const http = client(server.path);
  try {
    const res = await fetch("http://localhost/", { client: http });
    await res.body?.cancel();
    return res.status === 200;
  } finally {
    http.close();
  }
}
