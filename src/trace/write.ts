/**
 * Trace files. `--trace FILE` writes one JSON file that serves both kinds of reader:
 *
 * - the Perfetto UI and `chrome://tracing` read its `displayTimeUnit`, `otherData` and
 *   `traceEvents` ({@linkcode toPerfetto}); `deno run -A mod.ts trace timeline` draws it;
 * - `trace dump` and `trace summary` read the exact records, which the file carries after the
 *   events under the key `denoVmmTrace` (the format of `traceToJson`: the ring's records, base64,
 *   with the vCPU and string tables). The Trace Event Format lets a JSON object trace carry other
 *   keys; Perfetto's importer skips (older versions: stops at) a key it does not know, so that key
 *   comes last, after everything Perfetto reads. It adds about a third to the file.
 *
 * @module
 */
import { RECORD_BYTES, type TraceData, traceFromJson, traceToJson } from "./events.ts";
import { type PerfettoEvent, type PerfettoTrace, toPerfetto } from "./perfetto.ts";

/** The key under which a trace file carries the raw records. */
export const RAW_KEY = "denoVmmTrace";

/** A Perfetto trace as read back from a file (events unchecked beyond their array). */
export interface PerfettoFile {
  /** The events. */
  traceEvents: PerfettoEvent[];
  /** Trace-wide facts, if any. */
  otherData?: Record<string, unknown>;
  /** Display unit, if given. */
  displayTimeUnit?: string;
}

/** The text of a trace file for `data` (Perfetto JSON, then the raw records). */
export function traceFileText(data: TraceData, options: { raw?: boolean } = {}): string {
  const p: PerfettoTrace = toPerfetto(data);
  const head = JSON.stringify({
    displayTimeUnit: p.displayTimeUnit,
    otherData: p.otherData,
  }).slice(0, -1);
  // One event per line: readable with grep and diff, and barely larger.
  const events = p.traceEvents.map((e) => JSON.stringify(e)).join(",\n");
  const raw = options.raw === false ? "" : `,\n${JSON.stringify(RAW_KEY)}: ${traceToJson(data)}`;
  return `${head},\n"traceEvents": [\n${events}\n]${raw}\n}\n`;
}

/**
 * Writes `data` to `path` as Perfetto JSON (what `--trace FILE` saves): open it at
 * https://ui.perfetto.dev or draw it with `deno run -A mod.ts trace timeline FILE`.
 */
export async function writeTraceFile(path: string, data: TraceData): Promise<void> {
  await Deno.writeTextFile(path, traceFileText(data));
}

async function readJson(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`${path}: no such file`);
    throw new Error(`${path}: cannot read: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${path}: not JSON (${(e as Error).message})`);
  }
}

/**
 * Reads a Perfetto / Chrome JSON trace. Throws an Error naming the file when it is missing,
 * is not JSON, or has no `traceEvents` array.
 */
export async function readPerfettoFile(path: string): Promise<PerfettoFile> {
  const o = await readJson(path);
  if (typeof o !== "object" || o === null || Array.isArray(o)) {
    throw new Error(`${path}: not a trace file (expected a JSON object with "traceEvents")`);
  }
  const t = o as Record<string, unknown>;
  if (!Array.isArray(t.traceEvents)) {
    throw new Error(`${path}: not a Perfetto trace: no "traceEvents" array`);
  }
  return t as unknown as PerfettoFile;
}

/**
 * Reads the exact records from a file `--trace` wrote (or a bare `traceToJson` file). Throws an
 * Error naming the file when it cannot.
 */
export async function readTraceFile(path: string): Promise<TraceData> {
  const o = await readJson(path);
  if (typeof o !== "object" || o === null || Array.isArray(o)) {
    throw new Error(`${path}: not a deno-vmm trace file (expected a JSON object)`);
  }
  const t = o as Record<string, unknown>;
  const raw = RAW_KEY in t ? t[RAW_KEY] : "records" in t ? t : undefined;
  if (raw === undefined) {
    throw new Error(
      Array.isArray(t.traceEvents)
        ? `${path}: a Perfetto trace without deno-vmm's records ("${RAW_KEY}"): ` +
          `dump and summary need a file written by --trace`
        : `${path}: not a deno-vmm trace file (no "${RAW_KEY}" or "traceEvents")`,
    );
  }
  let data: TraceData;
  try {
    data = traceFromJson(JSON.stringify(raw));
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
  if (data.records.byteLength % RECORD_BYTES !== 0 || !Array.isArray(data.strings)) {
    throw new Error(
      `${path}: damaged deno-vmm trace (records are not whole ${RECORD_BYTES}-byte records)`,
    );
  }
  return data;
}
