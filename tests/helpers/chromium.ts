/**
 * Test helper: headless Chromium screenshots, and a small PNG decoder to read them.
 *
 * Chromium comes from Debian's `chromium` package: {@linkcode ensureChromium} finds it, or
 * installs it with apt-get when running as root (as CI does), or fails saying what to install.
 *
 * @module
 */

/** Where a Chromium binary may be, in order. */
const CANDIDATES = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"];

async function which(name: string): Promise<string | null> {
  const out = await new Deno.Command("sh", {
    args: ["-c", `command -v ${name}`],
    stdout: "piped",
    stderr: "null",
  }).output();
  const path = new TextDecoder().decode(out.stdout).trim();
  return out.success && path ? path : null;
}

/** The path of a Chromium binary (`$CHROMIUM` first), or null. */
export async function findChromium(): Promise<string | null> {
  const env = Deno.env.get("CHROMIUM");
  if (env) return env;
  for (const c of CANDIDATES) {
    const p = await which(c);
    if (p) return p;
  }
  return null;
}

async function apt(args: string[]): Promise<boolean> {
  const out = await new Deno.Command("apt-get", {
    args,
    env: { DEBIAN_FRONTEND: "noninteractive" },
    stdout: "null",
    stderr: "piped",
  }).output();
  return out.success;
}

/** Finds Chromium, installing Debian's `chromium` package as root when it is missing. */
export async function ensureChromium(): Promise<string> {
  const found = await findChromium();
  if (found) return found;
  if (Deno.uid() !== 0) {
    throw new Error(
      "chromium is missing: install it (apt-get install -y chromium) or set CHROMIUM",
    );
  }
  if (!(await apt(["install", "-y", "-qq", "chromium"]))) {
    await apt(["update", "-qq"]);
    if (!(await apt(["install", "-y", "-qq", "chromium"]))) {
      throw new Error("apt-get install chromium failed");
    }
  }
  const path = await findChromium();
  if (!path) throw new Error("chromium was installed but is not on PATH");
  return path;
}

/** What a page did in Chromium: its screenshot and its console messages. */
export interface Capture {
  /** The PNG bytes. */
  png: Uint8Array;
  /**
   * The page's console messages, one per entry, as Chromium logs them (`console.*` calls,
   * uncaught errors, and loads its Content-Security-Policy blocked).
   */
  console: string[];
}

/**
 * Loads `url` at `width` × `height` CSS px, device scale 1, and returns the screenshot and the
 * page's console messages (Chromium's log on stderr, the `CONSOLE` lines).
 */
export async function capture(
  url: string,
  width: number,
  height: number,
  timeoutMs = 60_000,
): Promise<Capture> {
  const chromium = await ensureChromium();
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-chromium-" });
  const png = `${dir}/shot.png`;
  try {
    const out = await new Deno.Command(chromium, {
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--no-first-run",
        "--enable-logging=stderr",
        "--v=0",
        `--user-data-dir=${dir}/profile`,
        `--screenshot=${png}`,
        `--window-size=${width},${height}`,
        url,
      ],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(timeoutMs),
    }).output();
    const log = new TextDecoder().decode(out.stderr);
    try {
      return {
        png: await Deno.readFile(png),
        console: log.split("\n").filter((l) => /:CONSOLE[:(]/.test(l)),
      };
    } catch {
      throw new Error(`chromium made no screenshot (exit ${out.code}): ${log.slice(-2000)}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Screenshots `url` at `width` × `height` CSS px, device scale 1; returns the PNG bytes. */
export async function screenshot(
  url: string,
  width: number,
  height: number,
  timeoutMs = 60_000,
): Promise<Uint8Array> {
  return (await capture(url, width, height, timeoutMs)).png;
}

/** A decoded image: 8-bit RGBA, row-major. */
export interface Image {
  /** Width, px. */
  width: number;
  /** Height, px. */
  height: number;
  /** RGBA bytes. */
  rgba: Uint8Array;
}

/** The RGBA of pixel (x, y). */
export function pixel(img: Image, x: number, y: number): [number, number, number, number] {
  const o = (Math.round(y) * img.width + Math.round(x)) * 4;
  return [img.rgba[o], img.rgba[o + 1], img.rgba[o + 2], img.rgba[o + 3]];
}

/** `#rrggbb` → [r, g, b]. */
export function rgbOf(hex: string): [number, number, number] {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

/** Whether each channel of `got` is within `tol` of `want`. */
export function near(got: number[], want: [number, number, number], tol = 3): boolean {
  return want.every((c, i) => Math.abs(got[i] - c) <= tol);
}

/** Asserts that pixel (x, y) has colour `hex` (within 3 per channel); `what` names it. */
export function assertColor(img: Image, x: number, y: number, hex: string, what: string): void {
  const got = pixel(img, x, y);
  if (!near(got, rgbOf(hex))) {
    throw new Error(
      `${what}: pixel (${x.toFixed(0)}, ${y.toFixed(0)}) is rgb(${got.slice(0, 3)}), want ${hex}`,
    );
  }
}

/**
 * Decodes a non-interlaced 8-bit PNG (grey, grey+alpha, RGB, RGBA or palette), what Chromium
 * writes (PNG spec, W3C REC-png: chunks, zlib IDAT, per-row filters 0-4).
 */
export async function decodePng(bytes: Uint8Array): Promise<Image> {
  const sig = [137, 80, 78, 71, 13, 10, 26, 10];
  if (!sig.every((b, i) => bytes[i] === b)) throw new Error("not a PNG");
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let off = 8, width = 0, height = 0, depth = 0, color = 0, interlace = 0;
  let palette: Uint8Array | null = null;
  const idat: Uint8Array[] = [];
  while (off < bytes.length) {
    const len = dv.getUint32(off);
    const type = new TextDecoder().decode(bytes.subarray(off + 4, off + 8));
    const data = bytes.subarray(off + 8, off + 8 + len);
    if (type === "IHDR") {
      width = dv.getUint32(off + 8);
      height = dv.getUint32(off + 12);
      depth = data[8];
      color = data[9];
      interlace = data[12];
    } else if (type === "PLTE") palette = data;
    else if (type === "IDAT") idat.push(data);
    else if (type === "IEND") break;
    off += 12 + len;
  }
  if (depth !== 8 || interlace !== 0) {
    throw new Error(
      `PNG: only 8-bit non-interlaced images (depth ${depth}, interlace ${interlace})`,
    );
  }
  const channels = ({ 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 } as Record<number, number>)[color];
  if (!channels) throw new Error(`PNG: colour type ${color}`);
  const zipped = new Blob(idat as BlobPart[]).stream().pipeThrough(
    new DecompressionStream("deflate"),
  );
  const raw = new Uint8Array(await new Response(zipped).arrayBuffer());
  const stride = width * channels;
  const px = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = px.subarray(y * stride, (y + 1) * stride);
    const up = y > 0 ? px.subarray((y - 1) * stride, y * stride) : new Uint8Array(stride);
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? row[i - channels] : 0;
      const b = up[i];
      const c = i >= channels ? up[i - channels] : 0;
      let v = src[i];
      if (filter === 1) v += a;
      else if (filter === 2) v += b;
      else if (filter === 3) v += (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
        v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else if (filter !== 0) throw new Error(`PNG: filter ${filter}`);
      row[i] = v & 255;
    }
  }
  const rgba = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    const s = i * channels, d = i * 4;
    if (color === 0 || color === 4) {
      rgba[d] = rgba[d + 1] = rgba[d + 2] = px[s];
      rgba[d + 3] = color === 4 ? px[s + 1] : 255;
    } else if (color === 3) {
      const p = px[s] * 3;
      rgba[d] = palette![p];
      rgba[d + 1] = palette![p + 1];
      rgba[d + 2] = palette![p + 2];
      rgba[d + 3] = 255;
    } else {
      rgba[d] = px[s];
      rgba[d + 1] = px[s + 1];
      rgba[d + 2] = px[s + 2];
      rgba[d + 3] = color === 6 ? px[s + 3] : 255;
    }
  }
  return { width, height, rgba };
}
