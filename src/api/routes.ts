/**
 * The control API's routes, as a plain `Request → Response` handler over a {@linkcode Vmm}
 * (the server in `server.ts` puts it on a Unix socket). JSON in, JSON out, in the spirit of
 * Firecracker's API and Xen's `xl`:
 *
 * | method | path              | body                                    | does                    |
 * | ------ | ----------------- | --------------------------------------- | ----------------------- |
 * | GET    | /                 |                                         | what this server is     |
 * | GET    | /vms              |                                         | list VMs                |
 * | GET    | /vms/{name}       |                                         | one VM, every vCPU      |
 * | PUT    | /vms/{name}/state | `{"state": "paused"\|"running"\|"stopped"}` | pause / resume / stop |
 * | GET    | /sched            |                                         | policy, slots, vCPUs    |
 * | PUT    | /sched/params     | `{"target": vm\|"*", "params": {...}}`  | weights, caps, budgets  |
 * | PUT    | /sched/policy     | `{"plugin": path\|URL, "params": {...}}`| hot-swap the policy     |
 * | POST   | /sched/eject      | `{"reason"?: text}`                     | eject the plugin now    |
 * | GET    | /metrics          |                                         | Prometheus text 0.0.4   |
 *
 * A bad request (unknown route or VM, bad JSON, a value out of range, no scheduler) is a 4xx
 * with `{"error": "..."}` and changes nothing: every check runs before anything is done.
 *
 * @module
 */
import type { SchedParams } from "../sched/contract.ts";
import { type Scheduler, SchedulerError } from "../sched/scheduler.ts";
import type { SchedStats } from "../sched/runtime_protocol.ts";
import type { Vm } from "../vm/vm.ts";
import type { Vmm } from "../vmm.ts";
import { ApiError, errorResponse, json, onlyKeys, readJsonObject } from "./http.ts";
import { METRICS_CONTENT_TYPE, renderMetrics } from "./metrics.ts";
import { currentSchedParams, recordSchedParams, validateSchedParams } from "./params.ts";
import { schedView, vmDetail, vmSummary } from "./views.ts";

/** A state `PUT /vms/{name}/state` accepts. */
export type TargetState = "paused" | "running" | "stopped";

/** The states `PUT /vms/{name}/state` accepts. */
export const TARGET_STATES: readonly TargetState[] = ["paused", "running", "stopped"];

type Handler = (req: Request, vmm: Vmm, args: string[]) => Promise<Response> | Response;

interface Route {
  /** Path segments; `:x` matches any one segment (passed to the handler in order). */
  path: string[];
  methods: Partial<Record<string, Handler>>;
}

function vmOf(vmm: Vmm, name: string): Vm {
  const vm = vmm.vms.get(name);
  if (!vm) {
    const known = [...vmm.vms.keys()];
    throw new ApiError(
      404,
      `no VM named '${name}'` + (known.length ? ` (VMs: ${known.join(", ")})` : " (no VMs)"),
    );
  }
  return vm;
}

function schedulerOf(vmm: Vmm): Scheduler {
  const s = vmm.scheduler;
  if (!s) {
    throw new ApiError(404, "this VMM has no scheduler (start it with --sched PLUGIN)");
  }
  return s;
}

/** Runs a scheduler call; a SchedulerError becomes an ApiError with `status`. */
async function schedCall<T>(status: number, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof SchedulerError) throw new ApiError(status, e.message);
    throw e;
  }
}

/** How long a read waits for the scheduler core before the API answers 503. */
const STATS_TIMEOUT_MS = 5000;

/** The scheduler's statistics; a 503 if its core does not answer in time (it is stuck). */
async function readStats(s: Scheduler): Promise<SchedStats> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new ApiError(503, `the scheduler core did not answer within ${STATS_TIMEOUT_MS} ms`),
        ),
      STATS_TIMEOUT_MS,
    );
  });
  try {
    return await Promise.race([schedCall(409, () => s.stats()), late]);
  } finally {
    clearTimeout(timer);
  }
}

function schedStats(vmm: Vmm): Promise<SchedStats | null> {
  const s = vmm.scheduler;
  return s ? readStats(s) : Promise.resolve(null);
}

function paramsObject(field: string, v: unknown): SchedParams {
  if (v === undefined) return {};
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new ApiError(400, `${field} must be a JSON object`);
  }
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== "number" && typeof x !== "string" && typeof x !== "boolean") {
      throw new ApiError(400, `${field}.${k} must be a number, string or boolean`);
    }
  }
  return v as SchedParams;
}

async function putState(req: Request, vmm: Vmm, [name]: string[]): Promise<Response> {
  const vm = vmOf(vmm, name);
  const body = await readJsonObject(req);
  onlyKeys(body, ["state"]);
  const want = body.state;
  if (!TARGET_STATES.includes(want as TargetState)) {
    throw new ApiError(
      400,
      `state must be one of ${TARGET_STATES.map((s) => `"${s}"`).join(", ")}, ` +
        `got ${JSON.stringify(want)}`,
    );
  }
  const conflict = (what: string) =>
    new ApiError(409, `vm '${vm.name}' is ${vm.state}: cannot ${what}`);
  switch (want as TargetState) {
    case "paused":
      if (vm.state === "paused") break;
      if (vm.state !== "running") throw conflict("pause it");
      vm.pause();
      break;
    case "running":
      if (vm.state === "running") break;
      if (vm.state === "paused") vm.resume();
      else if (vm.state === "created") await vm.start();
      else throw conflict("run it");
      break;
    case "stopped":
      if (vm.state === "closed") throw conflict("stop it");
      await vm.stop();
      break;
  }
  return json(vmSummary(vm));
}

async function putParams(req: Request, vmm: Vmm): Promise<Response> {
  const sched = schedulerOf(vmm);
  const body = await readJsonObject(req);
  onlyKeys(body, ["target", "params"]);
  const target = body.target;
  if (typeof target !== "string" || target === "") {
    throw new ApiError(400, `target must be a VM name or "*"`);
  }
  if (body.params === undefined) throw new ApiError(400, "params is missing");
  let vm: Vm | undefined;
  if (target !== "*") {
    vm = vmOf(vmm, target);
    if (vm.state !== "running" && vm.state !== "paused") {
      throw new ApiError(409, `vm '${vm.name}' is ${vm.state}: the scheduler does not hold it`);
    }
  }
  const checked = validateSchedParams(target, body.params, {
    policy: sched.policy,
    slots: sched.slots,
    current: vm && currentSchedParams(vm),
  });
  await schedCall(409, () => sched.setParams(target, checked.params));
  if (vm) recordSchedParams(vm, checked.params);
  const out: Record<string, unknown> = {
    target,
    policy: sched.policy,
    params: vm ? currentSchedParams(vm) : checked.params,
  };
  if (checked.unused.length) {
    out.note = `${sched.policy} does not read ${checked.unused.join(", ")}; ` +
      `kept for the next policy`;
  }
  return json(out);
}

async function putPolicy(req: Request, vmm: Vmm): Promise<Response> {
  const sched = schedulerOf(vmm);
  const body = await readJsonObject(req);
  onlyKeys(body, ["plugin", "params"]);
  if (typeof body.plugin !== "string" || body.plugin.trim() === "") {
    throw new ApiError(400, "plugin must be the path or URL of a scheduler module");
  }
  const params = paramsObject("params", body.params);
  const plugin = body.plugin;
  await schedCall(400, () => sched.swap(plugin, params));
  return json({ policy: sched.policy, slots: sched.slots });
}

async function postEject(req: Request, vmm: Vmm): Promise<Response> {
  const sched = schedulerOf(vmm);
  const body = await readJsonObject(req, true);
  onlyKeys(body, ["reason"]);
  if (body.reason !== undefined && typeof body.reason !== "string") {
    throw new ApiError(400, "reason must be a string");
  }
  const reason = (body.reason as string | undefined) ?? "operator request (API)";
  await schedCall(409, () => sched.eject(reason));
  return json({ policy: sched.policy, ejections: sched.ejections });
}

const ENDPOINTS = [
  "GET /vms",
  "GET /vms/{name}",
  "PUT /vms/{name}/state",
  "GET /sched",
  "PUT /sched/params",
  "PUT /sched/policy",
  "POST /sched/eject",
  "GET /metrics",
];

const ROUTES: Route[] = [
  {
    path: [],
    methods: {
      GET: (_req, vmm) =>
        json({
          name: "deno-vmm",
          vms: vmm.vms.size,
          scheduler: vmm.scheduler ? vmm.scheduler.policy : null,
          endpoints: ENDPOINTS,
        }),
    },
  },
  {
    path: ["vms"],
    methods: { GET: (_req, vmm) => json({ vms: [...vmm.vms.values()].map(vmSummary) }) },
  },
  {
    path: ["vms", ":name"],
    methods: {
      GET: async (_req, vmm, [name]) => {
        const vm = vmOf(vmm, name);
        return json(vmDetail(vm, await schedStats(vmm)));
      },
    },
  },
  { path: ["vms", ":name", "state"], methods: { PUT: putState } },
  {
    path: ["sched"],
    methods: {
      GET: async (_req, vmm) => {
        const stats = await readStats(schedulerOf(vmm));
        return json(schedView(stats, vmm.guestModeHighWater));
      },
    },
  },
  { path: ["sched", "params"], methods: { PUT: putParams } },
  { path: ["sched", "policy"], methods: { PUT: putPolicy } },
  { path: ["sched", "eject"], methods: { POST: postEject } },
  {
    path: ["metrics"],
    methods: {
      GET: async (_req, vmm) =>
        new Response(
          renderMetrics({
            vms: vmm.vms.values(),
            sched: await schedStats(vmm),
            guestModeHighWater: vmm.guestModeHighWater,
          }),
          { headers: { "content-type": METRICS_CONTENT_TYPE } },
        ),
    },
  },
];

function match(route: Route, segs: string[]): string[] | null {
  if (route.path.length !== segs.length) return null;
  const args: string[] = [];
  for (let i = 0; i < segs.length; i++) {
    const p = route.path[i];
    if (p.startsWith(":")) args.push(segs[i]);
    else if (p !== segs[i]) return null;
  }
  return args;
}

/** Creates the API's request handler over `vmm`. */
export function createApiHandler(vmm: Vmm): (req: Request) => Promise<Response> {
  return async (req) => {
    try {
      const url = new URL(req.url);
      let segs: string[];
      try {
        segs = url.pathname.split("/").filter((s) => s !== "").map(decodeURIComponent);
      } catch {
        throw new ApiError(400, `bad path ${url.pathname}`);
      }
      for (const route of ROUTES) {
        const args = match(route, segs);
        if (!args) continue;
        const method = req.method === "HEAD" ? "GET" : req.method;
        const h = route.methods[method];
        if (!h) {
          const allow = Object.keys(route.methods).join(", ");
          throw new ApiError(
            405,
            `${req.method} is not allowed on ${url.pathname} (allowed: ${allow})`,
            { allow },
          );
        }
        return await h(req, vmm, args);
      }
      throw new ApiError(
        404,
        `no such endpoint: ${req.method} ${url.pathname} (endpoints: ${ENDPOINTS.join(", ")})`,
      );
    } catch (e) {
      return errorResponse(e);
    }
  };
}
