/**
 * The control API server: HTTP on a Unix socket, as Firecracker serves its API. The socket is
 * the access control (there is no authentication, as with Firecracker and Docker), so it is
 * made mode 0600 right after it is bound, before any request is handled: only its owner (and
 * root) can connect.
 *
 * Starting refuses a path that exists and is not a stale socket: a regular file, a directory,
 * or a socket some live process still accepts on. A stale socket (left by a VMM that was
 * killed; connecting to it is refused) is removed and replaced. The socket file is removed on
 * {@linkcode ApiServer.close}.
 *
 * ```ts
 * import { startApiServer, Vmm } from "@deno-vmm/deno-vmm";
 *
 * const vmm = await Vmm.create();
 * const api = await startApiServer(vmm, "/run/deno-vmm.sock");
 * // curl --unix-socket /run/deno-vmm.sock http://localhost/vms
 * await api.close();
 * ```
 *
 * @module
 */
import type { Vmm } from "../vmm.ts";
import { createApiHandler } from "./routes.ts";

/** A running API server. */
export interface ApiServer {
  /** The socket's path. */
  readonly path: string;
  /** Stops accepting, waits for requests in flight, removes the socket file. */
  close(): Promise<void>;
}

/** Why the API server cannot start on a path. */
export class ApiSocketError extends Error {
  /**
   * Creates the error.
   * @param message what is wrong with the path
   */
  constructor(message: string) {
    super(message);
    this.name = "ApiSocketError";
  }
}

/** Removes `path` if it is a stale socket; throws if it is anything else that exists. */
async function clearPath(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw new ApiSocketError(`cannot use ${path}: ${(e as Error).message}`);
  }
  if (!info.isSocket) {
    throw new ApiSocketError(`${path} exists and is not a socket: refusing to replace it`);
  }
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
  } catch (e) {
    if (e instanceof Deno.errors.ConnectionRefused) {
      await Deno.remove(path); // stale: nobody listens
      return;
    }
    throw new ApiSocketError(`cannot use ${path}: ${(e as Error).message}`);
  }
  throw new ApiSocketError(`${path} is in use by a running server`);
}

/**
 * Serves the control API for `vmm` on the Unix socket `path` (mode 0600). Rejects with an
 * {@linkcode ApiSocketError} when the path is taken.
 *
 * @example Serve the API; `deno-vmm ctl --api /tmp/vmm.sock ...` or an `ApiClient` talks to it
 * ```ts
 * import { startApiServer, Vmm } from "@deno-vmm/deno-vmm";
 *
 * const vmm = await Vmm.create();
 * const api = await startApiServer(vmm, "/tmp/vmm.sock");
 * // ... create and run VMs ...
 * await api.close();
 * await vmm.close();
 * ```
 */
export async function startApiServer(vmm: Vmm, path: string): Promise<ApiServer> {
  await clearPath(path);
  const handler = createApiHandler(vmm);
  const server = Deno.serve({
    path,
    transport: "unix",
    onListen: () => {},
    onError: (e) =>
      Response.json({ error: `internal error: ${(e as Error)?.message ?? e}` }, { status: 500 }),
  }, handler);
  // Bound synchronously by Deno.serve; no request is handled before this returns to the loop.
  try {
    Deno.chmodSync(path, 0o600);
  } catch (e) {
    await server.shutdown();
    throw new ApiSocketError(`cannot make ${path} private: ${(e as Error).message}`);
  }
  let closed: Promise<void> | undefined;
  return {
    path,
    close() {
      closed ??= (async () => {
        await server.shutdown();
        try {
          await Deno.remove(path); // Deno removes it on shutdown; older versions did not
        } catch (e) {
          if (!(e instanceof Deno.errors.NotFound)) throw e;
        }
      })();
      return closed;
    },
  };
}
