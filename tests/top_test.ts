/**
 * The live top view on real KVM: plain (non-TTY) frames list every VM and vCPU with CPU %
 * that adds up to what one slot can give, the scheduler's state / slot / wait % and credit's
 * policy events; on a TTY each frame is redrawn in place; without a scheduler it still shows
 * the counters.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { KERNEL, requireKernel, sleep } from "./helpers/vmm.ts";
import { type SchedulerOptions, Vmm } from "../mod.ts";
import { startTop } from "../src/cli/top.ts";
import { test } from "./helpers/deadline.ts";

const plugin = (name: string) => new URL(`../plugins/${name}`, import.meta.url).href;

/** One table row of a frame. */
interface Row {
  name: string;
  vcpu: string;
  state: string;
  cpu: number;
  exits: number;
  halts: number;
  slot: string;
  wait: string;
  credit: string;
  prio: string;
  events: string;
}

/** Splits plain output into frames (blank-line separated) and parses each frame's rows. */
function frames(text: string): { head: string; rows: Row[] }[] {
  return text.split("\n\n").filter((f) => f.trim() !== "").map((f) => {
    const [head, columns, ...lines] = f.split("\n");
    assert(/^NAME\s+VCPU\s+STATE\s+CPU%\s+EXITS\/s\s+HALTS\/s\s+SLOT\s+WAIT%/.test(columns), f);
    const rows = lines.map((l) => {
      const c = l.trim().split(/\s+/);
      assertEquals(c.length, 11, `row '${l}'`);
      return {
        name: c[0],
        vcpu: c[1],
        state: c[2],
        cpu: Number(c[3]),
        exits: Number(c[4]),
        halts: Number(c[5]),
        slot: c[6],
        wait: c[7],
        credit: c[8],
        prio: c[9],
        events: c[10],
      };
    });
    return { head, rows };
  });
}

async function withVms(
  scheduler: SchedulerOptions | undefined,
  vms: { name: string; vcpus: number }[],
  body: (vmm: Vmm) => Promise<void>,
): Promise<void> {
  await requireKernel();
  const vmm = await Vmm.create({ scheduler });
  try {
    for (const v of vms) {
      const vm = await vmm.createVm({
        ...v,
        kernel: KERNEL,
        cmdline: "workload=spin seconds=0",
      });
      await vm.start();
    }
    await body(vmm);
  } finally {
    await vmm.close();
  }
}

test("top (plain): every VM and vCPU, CPU % adding up to one slot, credit columns", async () => {
  await withVms(
    { plugin: plugin("credit.ts"), slots: 1 },
    [{ name: "a", vcpus: 2 }, { name: "b", vcpus: 1 }],
    async (vmm) => {
      let text = "";
      const top = startTop(vmm, { intervalMs: 400, tty: false, out: (t) => text += t });
      await sleep(2100);
      await top.stop();
      const out = text;
      await sleep(500);
      assertEquals(text, out, "nothing written after stop");
      assert(!out.includes("\x1b"), "no escape codes in plain output");
      const fs = frames(out);
      assert(fs.length >= 3, `${fs.length} frames in 2.1 s at 400 ms:\n${out}`);
      const last = fs.at(-1)!;
      console.log(
        `last frame:\n${last.head}\n${last.rows.map((r) => JSON.stringify(r)).join("\n")}`,
      );
      assert(/policy=credit\s+slots=1/.test(last.head), last.head);
      assertEquals(
        last.rows.map((r) => `${r.name}/${r.vcpu}`),
        ["a/*", "a/0", "a/1", "b/*", "b/0"],
      );
      for (const f of fs.slice(1)) {
        const vcpus = f.rows.filter((r) => r.vcpu !== "*");
        const total = vcpus.reduce((s, r) => s + r.cpu, 0);
        // Three spinners on one slot: together they get the slot (less switching overhead).
        assert(total > 70 && total <= 105, `vCPUs total ${total} % of one slot`);
        for (const r of vcpus) {
          assert(r.cpu >= 0 && r.cpu <= 100, `${r.name}/${r.vcpu} at ${r.cpu} %`);
          assert(r.cpu > 5, `${r.name}/${r.vcpu} starved: ${r.cpu} %`);
          assert(["running", "runnable", "halted"].includes(r.state), r.state);
          assert(r.wait !== "-" && Number(r.wait) >= 0, `wait % of ${r.name}/${r.vcpu}`);
          assert(r.slot === "-" || r.slot === "0", r.slot);
          assert(Number.isFinite(r.exits) && Number.isFinite(r.halts));
        }
        for (const vm of ["a", "b"]) {
          const sum = vcpus.filter((r) => r.name === vm).reduce((s, r) => s + r.cpu, 0);
          const row = f.rows.find((r) => r.name === vm && r.vcpu === "*")!;
          assertEquals(row.state, "running");
          assert(Math.abs(row.cpu - sum) < 0.3, `${vm}: VM row ${row.cpu} % vs vCPUs ${sum} %`);
        }
        assert(vcpus.filter((r) => r.state === "running").length <= 1, "one slot");
      }
      // Credit reports its accounting as policy events: every vCPU shows a credit value.
      const vcpuRows = last.rows.filter((r) => r.vcpu !== "*");
      assert(vcpuRows.every((r) => /^-?\d/.test(r.credit)), "credit column");
    },
  );
});

test("top (TTY): frames redraw in place", async () => {
  await withVms({ plugin: plugin("rr.ts"), slots: 1 }, [{ name: "t", vcpus: 1 }], async (vmm) => {
    const chunks: string[] = [];
    const top = startTop(vmm, { intervalMs: 200, tty: true, out: (t) => chunks.push(t) });
    await sleep(750);
    await top.stop();
    assertEquals(chunks[0], "\x1b[2J", "the screen is cleared once");
    const redraws = chunks.slice(1);
    assert(redraws.length >= 2, `${redraws.length} frames`);
    for (const f of redraws) {
      assert(f.startsWith("\x1b[H") && f.endsWith("\x1b[J"), JSON.stringify(f.slice(0, 20)));
      assert(/\nt\s+0\s+running\s+\d+\.\d/.test(f.replaceAll("\x1b[K", "")), f);
    }
  });
});

test("top without a scheduler: counters only, CPU % per vCPU within 0..100", async () => {
  await withVms(undefined, [{ name: "f", vcpus: 2 }], async (vmm) => {
    let text = "";
    const top = startTop(vmm, { intervalMs: 400, tty: false, out: (t) => text += t });
    await sleep(1300);
    await top.stop();
    const fs = frames(text);
    assert(fs.length >= 2, text);
    const last = fs.at(-1)!;
    assert(/no scheduler/.test(last.head), last.head);
    assertEquals(last.rows.map((r) => `${r.name}/${r.vcpu}`), ["f/*", "f/0", "f/1"]);
    const cores = navigator.hardwareConcurrency;
    for (const r of last.rows.slice(1)) {
      // Thread CPU time comes in 10 ms ticks: over a 400 ms frame that is +-2.5 % a tick.
      assert(r.cpu > 1 && r.cpu <= 106, `${r.name}/${r.vcpu} at ${r.cpu} %`);
      assertEquals([r.slot, r.wait, r.credit], ["-", "-", "-"]);
    }
    assert(last.rows[0].cpu <= 100 * Math.min(2, cores) + 10, `${last.rows[0].cpu} %`);
  });
});
