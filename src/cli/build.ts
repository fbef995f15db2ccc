/**
 * `deno task build`: compiles the C shim and the built-in guest kernel into their cache (what
 * the first use would do), then the guest kernel into `guests/build/` and the C baselines of the
 * benches with make.
 *
 * @module
 */
import { buildShim } from "../../ffi/shim.ts";
import { guestKernel } from "../vm/guest_kernel.ts";

const root = new URL("../../", import.meta.url).pathname;

async function make(dir: string): Promise<void> {
  let out: Deno.CommandStatus;
  try {
    out = await new Deno.Command("make", {
      args: ["-C", `${root}${dir}`],
      stdout: "inherit",
      stderr: "inherit",
    })
      .spawn().status;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error("'make' was not found: install it (Debian/Ubuntu: apt-get install make gcc)");
    }
    throw e;
  }
  if (!out.success) throw new Error(`make -C ${dir} failed`);
}

if (import.meta.main) {
  try {
    console.log(`shim: ${await buildShim()}`);
    console.log(`kernel: ${await guestKernel()}`);
    await make("guests");
    await make("bench/baseline");
  } catch (e) {
    console.error(`build: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
