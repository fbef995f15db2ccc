/**
 * A client of the control API (`server.ts`) over its Unix socket: one method per endpoint,
 * typed with the server's own response shapes. A 4xx / 5xx answer throws an
 * {@linkcode ApiRequestError} carrying the server's message; an unreachable socket throws one
 * with status 0 that says so.
 *
 * ```ts
 * const api = new ApiClient("/run/deno-vmm.sock");
 * await api.setSchedParams("a", { weight: 512 });
 * console.log(await api.listVms());
 * api.close();
 * ```
 *
 * @module
 */
import type { SchedParams } from "../sched/contract.ts";
import type { EjectInfo } from "../sched/watchdog.ts";
import type { TargetState } from "./routes.ts";
import type { SchedView, VmDetail, VmSummary } from "./views.ts";

export type { SchedView, TargetState, VmDetail, VmSummary };

/** The server refused a request (`status` >= 400), or could not be reached (`status` 0). */
export class ApiRequestError extends Error {
  /** HTTP status, or 0 when the socket could not be reached. */
  readonly status: number;
  /**
   * Creates the error.
   * @param status HTTP status or 0
   * @param message the server's `error` text, or why it could not be reached
   */
  constructor(status: number, message: string) {
    super(message);
    this.name = "ApiRequestError";
    this.status = status;
  }
}

/** Answer of `PUT /sched/params`. */
export interface SetParamsResult {
  /** The VM name or `"*"`. */
  target: string;
  /** Policy in charge. */
  policy: string;
  /** The VM's parameters now (or those sent, for `"*"`). */
  params: SchedParams;
  /** Set when the policy in charge does not read some of the keys. */
  note?: string;
}

/** Answer of `PUT /sched/policy`. */
export interface SwapResult {
  /** Policy now in charge. */
  policy: string;
  /** Slots. */
  slots: number;
}

/** Answer of `POST /sched/eject`. */
export interface EjectResult {
  /** Policy now in charge (the fallback). */
  policy: string;
  /** Every ejection so far. */
  ejections: EjectInfo[];
}

/**
 * A control API client on one Unix socket.
 *
 * @example Pause a VM of a running VMM and give another a bigger weight
 * ```ts
 * import { ApiClient } from "@deno-vmm/deno-vmm";
 *
 * const api = new ApiClient("/tmp/vmm.sock");
 * try {
 *   console.log(await api.listVms());
 *   await api.setVmState("batch", "paused");
 *   await api.setSchedParams("web", { weight: 1024 });
 * } finally {
 *   api.close();
 * }
 * ```
 */
export class ApiClient {
  /** The socket's path. */
  readonly path: string;
  #http: Deno.HttpClient;

  /**
   * Creates a client; nothing is sent until the first request.
   * @param path the API socket
   */
  constructor(path: string) {
    this.path = path;
    this.#http = Deno.createHttpClient({ proxy: { transport: "unix", path } });
  }

  /** Sends one request; returns the response body text of a 2xx answer. */
  async request(method: string, route: string, body?: unknown): Promise<string> {
    let res: Response;
    try {
      res = await fetch(`http://localhost${route}`, {
        method,
        client: this.#http,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiRequestError(
        0,
        `cannot reach the API at ${this.path}: ${(e as Error).message}` +
          " (is the VMM running with --api?)",
      );
    }
    const text = await res.text();
    if (!res.ok) {
      let message = text.trim() || res.statusText;
      try {
        const o = JSON.parse(text);
        if (typeof o?.error === "string") message = o.error;
      } catch {
        // not JSON: keep the text
      }
      throw new ApiRequestError(res.status, message);
    }
    return text;
  }

  async #json<T>(method: string, route: string, body?: unknown): Promise<T> {
    return JSON.parse(await this.request(method, route, body)) as T;
  }

  /** `GET /vms`. */
  async listVms(): Promise<VmSummary[]> {
    return (await this.#json<{ vms: VmSummary[] }>("GET", "/vms")).vms;
  }

  /** `GET /vms/{name}`. */
  getVm(name: string): Promise<VmDetail> {
    return this.#json("GET", `/vms/${encodeURIComponent(name)}`);
  }

  /** `PUT /vms/{name}/state`: pause, resume (or start) or stop a VM. */
  setVmState(name: string, state: TargetState): Promise<VmSummary> {
    return this.#json("PUT", `/vms/${encodeURIComponent(name)}/state`, { state });
  }

  /** `GET /sched`. */
  getSched(): Promise<SchedView> {
    return this.#json("GET", "/sched");
  }

  /** `PUT /sched/params`: `target` is a VM name, or `"*"` for policy-wide parameters. */
  setSchedParams(target: string, params: SchedParams): Promise<SetParamsResult> {
    return this.#json("PUT", "/sched/params", { target, params });
  }

  /** `PUT /sched/policy`: hot-swap the policy (`plugin` as the server resolves it). */
  swapPolicy(plugin: string, params: SchedParams = {}): Promise<SwapResult> {
    return this.#json("PUT", "/sched/policy", { plugin, params });
  }

  /** `POST /sched/eject`. */
  eject(reason?: string): Promise<EjectResult> {
    return this.#json("POST", "/sched/eject", reason === undefined ? {} : { reason });
  }

  /** `GET /metrics`: the Prometheus text. */
  metrics(): Promise<string> {
    return this.request("GET", "/metrics");
  }

  /** Releases the connection pool. */
  close(): void {
    this.#http.close();
  }
}
