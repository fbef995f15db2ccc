/// <reference lib="deno.worker" />
/**
 * Test helper worker for tests/shim_test.ts: runs shim calls on a thread of its own.
 * Commands arrive as one message; results go back as one message.
 */
import { openShim } from "../../ffi/shim.ts";
import { HALT_RESULT } from "../../src/emt/shim_layout.ts";
import { mmap, munmap } from "../../src/kvm/libc.ts";

type Command =
  | {
    op: "halt-races";
    shimPath: string;
    block: SharedArrayBuffer;
    sync: SharedArrayBuffer;
    rounds: number;
  }
  | {
    op: "wake-on";
    shimPath: string;
    block: SharedArrayBuffer;
    sync: SharedArrayBuffer;
    rounds: number;
  }
  | {
    op: "run-until-poked";
    shimPath: string;
    block: SharedArrayBuffer;
    sync: SharedArrayBuffer;
    vcpuFd: number;
    runSize: number;
    /** The run deadline, ns after this thread attached (0: none). */
    deadlineIn: number;
  };

self.onmessage = (ev: MessageEvent<Command>) => {
  const cmd = ev.data;
  const shim = openShim(cmd.shimPath).symbols;
  const e = Deno.UnsafePointer.of(cmd.block);
  const sync = new Int32Array(cmd.sync);
  if (cmd.op === "halt-races") {
    shim.shim_attach(e, null, -1, null);
    let timeouts = 0;
    for (let i = 0; i < cmd.rounds; i++) {
      // A missed wake would leave this halt to its 2 s deadline: a timeout.
      const r = shim.shim_halt(e, shim.shim_now_f64() + 2e9, 0, 0);
      if (r !== HALT_RESULT.woken) timeouts++;
      Atomics.add(sync, 0, 1);
      Atomics.notify(sync, 0);
    }
    shim.shim_detach(e);
    self.postMessage({ timeouts });
  } else if (cmd.op === "wake-on") {
    shim.shim_attach(e, null, -1, null);
    const seen: { cpu: number; allowed: string }[] = [];
    for (let i = 0; i < cmd.rounds; i++) {
      shim.shim_halt(e, shim.shim_now_f64() + 2e9, 1, 0);
      // Field 39 of stat: the CPU the thread last ran on (here: now).
      const stat = Deno.readTextFileSync("/proc/thread-self/stat");
      const cpu = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[36]);
      const status = Deno.readTextFileSync("/proc/thread-self/status");
      seen.push({ cpu, allowed: /Cpus_allowed_list:\s*(\S+)/.exec(status)![1] });
      Atomics.add(sync, 0, 1);
      Atomics.notify(sync, 0);
    }
    shim.shim_detach(e);
    self.postMessage({ seen });
  } else {
    const run = mmap(cmd.runSize, { fd: cmd.vcpuFd, shared: true });
    shim.shim_attach(e, null, cmd.vcpuFd, run);
    Atomics.store(sync, 0, 1);
    // The deadline is taken here, not by the test before this Worker started: a Worker that
    // took longer to start than the test's margin found its deadline past and never entered
    // guest mode, and the test waited for guest mode forever.
    const deadline = cmd.deadlineIn > 0 ? shim.shim_now_f64() + cmd.deadlineIn : 0;
    const result = shim.shim_run(e, deadline);
    const returnedAt = shim.shim_now_f64();
    shim.shim_detach(e);
    munmap(run, cmd.runSize);
    self.postMessage({ result, returnedAt, deadline });
  }
};
