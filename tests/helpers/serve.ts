/** Test helper: a static HTTP server of a directory on 127.0.0.1, as a user's web host would be. */

/** Content types by extension; `.ts` as TypeScript, so that Deno runs what it fetches. */
const TYPES: Record<string, string> = {
  ".ts": "application/typescript",
  ".json": "application/json",
};

/** Options of {@linkcode serveTree}. */
export interface ServeOptions {
  /** Extra paths served with another file's body: `{ "/elsewhere/rr.ts": "/plugins/rr.ts" }`. */
  alias?: Record<string, string>;
}

/** A running server. */
export interface TreeServer {
  /** The served root, as a URL ending in `/`. */
  base: string;
  /** `host:port`. */
  host: string;
  /** Every request's path and status, in order. */
  requests: { path: string; status: number }[];
  /** Stops serving. */
  close(): Promise<void>;
}

/** Serves the files under `root` (GET only; no path outside it); `.ts` as TypeScript. */
export function serveTree(root: URL, options: ServeOptions = {}): TreeServer {
  const requests: TreeServer["requests"] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const asked = decodeURIComponent(new URL(req.url).pathname);
    const path = options.alias?.[asked] ?? asked;
    let res: Response;
    if (req.method !== "GET" || path.split("/").includes("..")) {
      res = new Response("no", { status: 400 });
    } else {
      try {
        const body = await Deno.readFile(new URL(`.${path}`, root));
        const ext = path.slice(path.lastIndexOf("."));
        res = new Response(body, {
          headers: { "content-type": TYPES[ext] ?? "text/plain; charset=utf-8" },
        });
      } catch {
        res = new Response("not found", { status: 404 });
      }
    }
    requests.push({ path: asked, status: res.status });
    return res;
  });
  const host = `127.0.0.1:${server.addr.port}`;
  return { base: `http://${host}/`, host, requests, close: () => server.shutdown() };
}
