/**
 * Test helper: serves a directory over HTTP on 127.0.0.1, as a web server would serve the
 * package for a URL import or `deno install <url>` (Deno wants `.ts` as
 * `application/typescript`, which Python's `http.server` does not send).
 *
 * Run as a program it serves the checkout: `deno run -A tests/helpers/file_server.ts [PORT]`.
 *
 * @module
 */

const TYPES: Record<string, string> = {
  ".ts": "application/typescript",
  ".json": "application/json",
  ".c": "text/plain",
  ".md": "text/markdown",
};

/** A running file server. */
export interface FileServer {
  /** The base URL, ending in `/`. */
  url: string;
  /** Paths requested so far, with their status. */
  requests: { path: string; status: number }[];
  /** Stops the server. */
  close(): Promise<void>;
}

/** Serves `root` (a directory path) on 127.0.0.1 at `port` (0: any free port). */
export function serveDir(root: string, port = 0): FileServer {
  const requests: { path: string; status: number }[] = [];
  const base = root.endsWith("/") ? root.slice(0, -1) : root;
  const server = Deno.serve({ hostname: "127.0.0.1", port, onListen() {} }, async (req) => {
    const path = decodeURIComponent(new URL(req.url).pathname);
    if (path.split("/").includes("..")) {
      requests.push({ path, status: 400 });
      return new Response("bad path", { status: 400 });
    }
    try {
      const body = await Deno.readFile(`${base}${path}`);
      requests.push({ path, status: 200 });
      const ext = path.slice(path.lastIndexOf("."));
      return new Response(body, {
        headers: { "content-type": TYPES[ext] ?? "application/octet-stream" },
      });
    } catch {
      requests.push({ path, status: 404 });
      return new Response("not found", { status: 404 });
    }
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/`,
    requests,
    close: () => server.shutdown(),
  };
}

if (import.meta.main) {
  const root = new URL("../../", import.meta.url).pathname;
  const s = serveDir(root, Number(Deno.args[0] ?? 0));
  console.log(`serving ${root} at ${s.url}`);
}
