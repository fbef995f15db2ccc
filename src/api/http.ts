/**
 * HTTP plumbing of the control API: the error type every handler throws for a bad request,
 * JSON responses, and reading a request's JSON body with a size limit.
 *
 * @module
 */

/** Largest request body accepted, bytes (Firecracker's API server uses 50 KiB). */
export const MAX_BODY_BYTES = 64 * 1024;

/** A request the API refuses: `status` (4xx) and a message meant for the operator. */
export class ApiError extends Error {
  /** HTTP status. */
  readonly status: number;
  /** Extra headers (e.g. `Allow` for a 405). */
  readonly headers: Record<string, string>;
  /**
   * Creates the error.
   * @param status HTTP status (4xx for the client's fault, 5xx for ours)
   * @param message what is wrong, in a sentence
   * @param headers extra response headers
   */
  constructor(status: number, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.headers = headers;
  }
}

/** A JSON response (`status` 200 unless told). */
export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body, null, 2) + "\n", {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

/** The JSON error response for `e` (an {@linkcode ApiError}, or a 500 for anything else). */
export function errorResponse(e: unknown): Response {
  if (e instanceof ApiError) return json({ error: e.message }, e.status, e.headers);
  const message = e instanceof Error ? e.message : String(e);
  return json({ error: `internal error: ${message}` }, 500);
}

/**
 * Reads the body as a JSON object. An empty body is `{}` when `optional`, else a 400; anything
 * but a JSON object, or more than {@linkcode MAX_BODY_BYTES}, is a 400 / 413.
 */
export async function readJsonObject(
  req: Request,
  optional = false,
): Promise<Record<string, unknown>> {
  const length = Number(req.headers.get("content-length") ?? "0");
  if (length > MAX_BODY_BYTES) {
    throw new ApiError(413, `request body too large (${length} bytes, limit ${MAX_BODY_BYTES})`);
  }
  const text = new TextDecoder().decode(await readLimited(req)).trim();
  if (text === "") {
    if (optional) return {};
    throw new ApiError(400, "this request needs a JSON object body");
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new ApiError(400, `body is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ApiError(400, "body must be a JSON object");
  }
  return value as Record<string, unknown>;
}

/**
 * The body's bytes, read as they come and given up past {@linkcode MAX_BODY_BYTES}: a body with
 * no Content-Length (chunked) is never buffered whole, however long the client goes on sending.
 */
async function readLimited(req: Request): Promise<Uint8Array> {
  if (!req.body) return new Uint8Array();
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let length = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      length += value.length;
      if (length > MAX_BODY_BYTES) {
        throw new ApiError(413, `request body too large (limit ${MAX_BODY_BYTES} bytes)`);
      }
      chunks.push(value);
    }
  } catch (e) {
    if (e instanceof ApiError) {
      reader.cancel().catch(() => {});
      throw e;
    }
    throw new ApiError(400, `cannot read the request body: ${(e as Error).message}`);
  }
  const out = new Uint8Array(length);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

/** Throws a 400 naming the first key of `body` not in `known`. */
export function onlyKeys(body: Record<string, unknown>, known: readonly string[]): void {
  for (const k of Object.keys(body)) {
    if (!known.includes(k)) {
      throw new ApiError(400, `unknown field '${k}' (known: ${known.join(", ")})`);
    }
  }
}
