/// <reference lib="deno.worker" />
/**
 * Worker entry of an EMT: receives an {@linkcode EmtInit}, opens the shim, runs the vCPU's loop
 * until the VM stops, releases what it mapped and reports "stopped". Then it waits for the next
 * init: the VMM reuses its idle EMT Workers (`emt_pool.ts`).
 *
 * @module
 */
import { openShim } from "../../ffi/shim.ts";
import { Emt } from "./emt.ts";
import type { EmtInit, EmtMessage } from "./protocol.ts";

const post = (m: EmtMessage) => self.postMessage(m);

self.onmessage = (ev: MessageEvent<EmtInit>) => {
  const init = ev.data;
  let emt: Emt | undefined;
  try {
    // Opened once per Worker (openShim keeps it), for every vCPU this Worker runs.
    emt = new Emt(init, openShim(init.shimPath), post);
    post({ type: "ready", vcpu: init.vcpu });
    emt.run();
  } catch (e) {
    post({
      type: "fault",
      vcpu: init.vcpu,
      fault: {
        reason: "EMT start failed",
        message: `vm ${init.vmName} vcpu ${init.vcpu}: EMT start failed: ${(e as Error).message}`,
      },
    });
  } finally {
    emt?.close();
    post({ type: "stopped", vcpu: init.vcpu });
  }
};
