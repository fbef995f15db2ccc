/**
 * The built-in guest kernel's first-use build (`src/vm/guest_kernel.ts`): one list of sources
 * for it and the Makefile, the same image as `make`, a cache keyed by the sources, safe when
 * several processes build at once, and clear errors.
 */
import { deepStrictEqual as assertEquals, match, ok as assert, rejects } from "node:assert/strict";
import {
  GUEST_SOURCES,
  guestKernel,
  GuestKernelError,
  parseManifest,
  SOURCES_MANIFEST,
} from "../src/vm/guest_kernel.ts";
import { test } from "./helpers/deadline.ts";

const GUESTS = GUEST_SOURCES.pathname;

/** A copy of `guests/` (without any build) in a temporary directory; its path ends in `/`. */
async function copyGuests(into: string): Promise<string> {
  const dst = `${into}/guests/`;
  const out = await new Deno.Command("cp", { args: ["-r", GUESTS, dst] }).output();
  assert(out.success, new TextDecoder().decode(out.stderr));
  await Deno.remove(`${dst}build`, { recursive: true }).catch(() => {});
  return dst;
}

function dirUrl(path: string): URL {
  return new URL(`file://${path.endsWith("/") ? path : `${path}/`}`);
}

test("guest kernel: sources.mk lists every file of kernel/ and user/; the Makefile includes it", async () => {
  const m = parseManifest(await Deno.readTextFile(`${GUESTS}${SOURCES_MANIFEST}`));
  const listed = new Set([...m.ksrc, ...m.usrc, ...m.hdr]);
  const onDisk: string[] = [];
  for (const dir of ["kernel", "user"]) {
    for (const e of Deno.readDirSync(`${GUESTS}${dir}`)) {
      if (e.isFile && /\.(c|S|h)$/.test(e.name)) onDisk.push(`${dir}/${e.name}`);
    }
  }
  assertEquals(onDisk.filter((f) => !listed.has(f)).sort(), [], "files not in sources.mk");
  assertEquals([...listed].filter((f) => !onDisk.includes(f)), [], "listed files that are gone");
  assertEquals(m.ldscript, "kernel.ld");
  assert(m.cflags.includes("-ffreestanding") && m.cflags.includes("-mgeneral-regs-only"));
  const makefile = await Deno.readTextFile(`${GUESTS}Makefile`);
  match(makefile, /^include sources\.mk$/m);
  assert(!/^(CFLAGS|LDFLAGS|KSRC|USRC|HDR)\s*:?=/m.test(makefile), "the Makefile lists again");
});

test("guest kernel: sources.mk's reader takes `:=` lines with continuations, and no more", () => {
  const m = parseManifest(
    "# c\nCFLAGS := -O2 \\\n\t-Wall\nLDFLAGS :=\nLDSCRIPT := k.ld\nKSRC := a.S \\\n b.c\n" +
      "USRC := u.c\nHDR := h.h\n",
  );
  assertEquals(m, {
    cflags: ["-O2", "-Wall"],
    ldflags: [],
    ldscript: "k.ld",
    ksrc: ["a.S", "b.c"],
    usrc: ["u.c"],
    hdr: ["h.h"],
  });
  const errorOf = (text: string): unknown => {
    try {
      parseManifest(text);
    } catch (e) {
      return e;
    }
    return null;
  };
  const bad = errorOf("KSRC = a.c\n");
  assert(bad instanceof GuestKernelError);
  match(bad.message, /sources\.mk: cannot read the line 'KSRC = a\.c'/);
  const missing = errorOf("KSRC := a.c\nLDSCRIPT := k.ld\n");
  assert(missing instanceof GuestKernelError);
  match(missing.message, /sources\.mk: no CFLAGS/);
});

test("guest kernel: built on first use into an empty cache, the very image make builds; then found", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "deno-vmm-kernel-" });
  try {
    const cache = `${tmp}/cache`;
    const messages: string[] = [];
    let t = performance.now();
    const elf = await guestKernel({ cacheDir: cache, onBuild: (m) => messages.push(m) });
    const buildMs = performance.now() - t;
    match(elf, /\/cache\/kernel-[0-9a-f]{16}\.elf$/);
    assertEquals(messages.length, 1);
    match(messages[0], /building the guest kernel .* \(first use\)/);
    // The Makefile (with the same sources.mk) builds the same bytes.
    const copy = await copyGuests(tmp);
    const make = await new Deno.Command("make", {
      args: ["-s", "-C", copy],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert(make.success, new TextDecoder().decode(make.stderr));
    assertEquals(
      await Deno.readFile(elf),
      await Deno.readFile(`${copy}build/kernel.elf`),
      "the first-use build and make differ",
    );
    // A second use in another process finds it (a fresh module: no in-process memo).
    t = performance.now();
    const again = await new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `import { guestKernel } from ${
          JSON.stringify(new URL("../src/vm/guest_kernel.ts", import.meta.url).href)
        };
console.log(await guestKernel({ cacheDir: ${
          JSON.stringify(cache)
        }, onBuild: () => console.log("built") }));`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(
      new TextDecoder().decode(again.stdout).trim(),
      elf,
      new TextDecoder().decode(again.stderr),
    );
    console.log(
      `first use: built in ${buildMs.toFixed(0)} ms; ` +
        `found by another process in ${(performance.now() - t).toFixed(0)} ms (with its start)`,
    );
    assertEquals([...Deno.readDirSync(cache)].map((e) => e.name), [elf.split("/").pop()]);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

test("guest kernel: four processes building at once into one empty cache get one whole file", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "deno-vmm-kernel-" });
  try {
    const cache = `${tmp}/cache`;
    const module = new URL("../src/vm/guest_kernel.ts", import.meta.url).href;
    const runs = await Promise.all(
      [0, 1, 2, 3].map(() =>
        new Deno.Command(Deno.execPath(), {
          args: [
            "eval",
            `import { guestKernel } from ${JSON.stringify(module)};
const p = await guestKernel({ cacheDir: ${JSON.stringify(cache)} });
console.log(JSON.stringify([p, Array.from((await Deno.readFile(p)).subarray(0, 4))]));`,
          ],
          stdout: "piped",
          stderr: "piped",
        }).output()
      ),
    );
    const dec = new TextDecoder();
    const results = runs.map((r) => {
      assert(r.success, dec.decode(r.stderr));
      return JSON.parse(dec.decode(r.stdout)) as [string, number[]];
    });
    const path = results[0][0];
    for (const [p, magic] of results) {
      assertEquals(p, path);
      assertEquals(magic, [0x7f, 0x45, 0x4c, 0x46]);
    }
    // Nothing half-built is left: the only entry is the kernel.
    assertEquals([...Deno.readDirSync(cache)].map((e) => e.name), [path.split("/").pop()]);
    const ref = await guestKernel({ cacheDir: `${tmp}/ref` });
    assertEquals(await Deno.readFile(path), await Deno.readFile(ref));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

test("guest kernel: an edited source is another build; compile errors and a missing compiler are clear", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "deno-vmm-kernel-" });
  const cc = Deno.env.get("CC");
  try {
    const cache = `${tmp}/cache`;
    const original = await guestKernel({ cacheDir: cache });
    const copy = await copyGuests(tmp);
    const sources = dirUrl(copy);
    const hello = `${copy}user/hello.c`;
    await Deno.writeTextFile(hello, "\n/* edited */\n", { append: true });
    const edited = await guestKernel({ sources, cacheDir: cache });
    assert(edited !== original, "an edit must change the key");
    assertEquals(await Deno.readFile(edited), await Deno.readFile(original)); // a comment only
    await Deno.writeTextFile(hello, "\n#error the test broke this file\n", { append: true });
    await rejects(guestKernel({ sources, cacheDir: cache }), (e: Error) => {
      assert(e instanceof GuestKernelError, String(e));
      match(e.message, /building the guest kernel failed at user\/hello\.c/);
      match(e.message, /the test broke this file/);
      return true;
    });
    Deno.env.set("CC", "/nonexistent/cc");
    await rejects(guestKernel({ cacheDir: `${tmp}/other` }), (e: Error) => {
      assert(e instanceof GuestKernelError, String(e));
      match(e.message, /no C compiler: '\/nonexistent\/cc' was not found/);
      match(e.message, /apt-get install gcc/);
      return true;
    });
    // Nothing of the failed builds is left in the cache.
    const left = [...Deno.readDirSync(cache)].map((e) => e.name).sort();
    assertEquals(left, [original, edited].map((p) => p.split("/").pop()).sort());
  } finally {
    if (cc === undefined) Deno.env.delete("CC");
    else Deno.env.set("CC", cc);
    await Deno.remove(tmp, { recursive: true });
  }
});
