/**
 * The timeline picture, rendered by a real browser: headless Chromium screenshots the SVG and
 * the test reads the PNG back, checking that each VM's colour is where the layout says its
 * grants are, idle slots look idle, the legend shows each VM's colour, and the title is drawn.
 * One trace is made with the recorder by hand (known times, known places); one comes from VMs
 * on KVM.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import {
  assertColor,
  decodePng,
  type Image,
  near,
  pixel,
  rgbOf,
  screenshot,
} from "./helpers/chromium.ts";
import { KERNEL, requireKernel, sleep } from "./helpers/vmm.ts";
import { Vmm } from "../mod.ts";
import { TRACE, type TraceData, TraceRecorder } from "../src/trace/events.ts";
import { toPerfetto } from "../src/trace/perfetto.ts";
import {
  BACKGROUND,
  buildTimeline,
  IDLE_COLOR,
  renderTimeline,
  type TimelineModel,
  type TimelineOptions,
  vmColor,
  xOf,
} from "../src/trace/timeline_svg.ts";
import { test } from "./helpers/deadline.ts";

/** Renders the timeline of `data` in Chromium; returns the layout and the screenshot. */
async function render(
  data: TraceData,
  options: TimelineOptions = {},
): Promise<{ model: TimelineModel; img: Image }> {
  // Through JSON, as a file written by --trace is read back.
  const json = JSON.parse(JSON.stringify(toPerfetto(data)));
  const model = buildTimeline(json, options);
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/timeline.svg`;
    await Deno.writeTextFile(file, renderTimeline(model));
    const png = await screenshot(`file://${file}`, model.width, model.height);
    const img = await decodePng(png);
    return { model, img };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Checks what every timeline must show. */
function checkCommon(model: TimelineModel, img: Image): void {
  assertEquals([img.width, img.height], [model.width, model.height]);
  // Not blank: the background, the idle colour, the VMs' colours and text are all there.
  const colours = new Set<number>();
  for (let i = 0; i < img.rgba.length; i += 4) {
    colours.add((img.rgba[i] << 16) | (img.rgba[i + 1] << 8) | img.rgba[i + 2]);
  }
  assert(colours.size > 10, `only ${colours.size} colours in the picture`);
  assertColor(img, 3, 3, BACKGROUND, "background");
  for (const l of model.legend) {
    assertColor(
      img,
      l.x + l.size / 2,
      l.y + l.size / 2,
      vmColor(l.vm),
      `legend ${model.vms[l.vm]}`,
    );
  }
  // The title is drawn: dark pixels in its band.
  let dark = 0;
  for (let y = 8; y < 28; y++) {
    for (let x = model.plot.x; x < model.plot.x + 300; x++) {
      if (pixel(img, x, y)[0] < 100) dark++;
    }
  }
  assert(dark > 100, `title: only ${dark} dark pixels`);
}

test("timeline in Chromium: colours where the grants are (recorded trace)", async () => {
  // 2 slots, 100 ms: slot 0 alpha/0 0-40, beta/0 40-70, gamma/0 70-100;
  // slot 1 alpha/1 10-50, gamma/0 50-65 then idle.
  const rec = new TraceRecorder(1024);
  const T0 = 5e12;
  const at = (ms: number) => T0 + ms * 1e6;
  const ids: Record<string, number> = {};
  let next = 1;
  for (const [vm, n] of [["alpha", 2], ["beta", 1], ["gamma", 1]] as const) {
    for (let i = 0; i < n; i++) {
      const id = next++;
      ids[`${vm}/${i}`] = id;
      rec.nameVcpu({ id, vm, index: i });
      rec.record(TRACE.vcpuAdd, at(0), id, -1, i, 0, rec.intern(vm));
    }
  }
  const run = (v: string, slot: number, from: number, to: number, reason: number) => {
    rec.record(TRACE.grant, at(from), ids[v], slot, 10e6);
    rec.record(TRACE.runEnd, at(to), ids[v], slot, (to - from) * 1e6, reason);
    rec.record(TRACE.decision, at(to) + 2000, ids[v], -1, 5000, reason === 0 ? 1 : 2);
  };
  for (const v of ["alpha/0", "alpha/1", "beta/0", "gamma/0"]) {
    rec.record(TRACE.wake, at(0), ids[v]);
  }
  run("alpha/0", 0, 0, 40, 1);
  run("alpha/1", 1, 10, 50, 0);
  run("beta/0", 0, 40, 70, 0);
  run("gamma/0", 1, 50, 65, 0);
  rec.record(TRACE.wake, at(66), ids["gamma/0"]);
  run("gamma/0", 0, 70, 100, 0);
  const data = rec.collect({ slots: 2, policy: "handmade" });

  const { model, img } = await render(data, { width: 1000 });
  checkCommon(model, img);
  assertEquals(model.vms, ["alpha", "beta", "gamma"]);
  const [s0, s1] = model.rows;
  const mid = (row: { y: number; h: number }) => row.y + row.h / 2;
  const expect: [typeof s0, number, string, string][] = [
    [s0, 20, vmColor(0), "slot 0 at 20 ms: alpha"],
    [s0, 55, vmColor(1), "slot 0 at 55 ms: beta"],
    [s0, 85, vmColor(2), "slot 0 at 85 ms: gamma"],
    [s1, 5, IDLE_COLOR, "slot 1 at 5 ms: idle"],
    [s1, 30, vmColor(0), "slot 1 at 30 ms: alpha"],
    [s1, 57, vmColor(2), "slot 1 at 57 ms: gamma"],
    [s1, 80, IDLE_COLOR, "slot 1 at 80 ms: idle"],
  ];
  for (const [row, ms, hex, what] of expect) assertColor(img, xOf(model, ms), mid(row), hex, what);
  // vCPU rows: alpha/0 runs 0-40 (solid), then waits runnable (pale, lighter than solid).
  const a0 = model.rows.find((r) => r.label === "alpha/0")!;
  assertColor(img, xOf(model, 20), mid(a0), vmColor(0), "alpha/0 running");
  const pale = pixel(img, xOf(model, 70), mid(a0));
  const solid = rgbOf(vmColor(0));
  assert(!near(pale, solid, 10) && !near(pale, [255, 255, 255], 10), `runnable: ${pale}`);
  assert(pale[2] > pale[0], "runnable alpha is a pale blue");
  // gamma/0 halted 65-66 ms then a wake tick at 66 ms above its row.
  const g0 = model.rows.find((r) => r.label === "gamma/0")!;
  assertEquals(g0.wakes.length, 2);
});

test("timeline in Chromium: a trace of VMs on KVM", async () => {
  await requireKernel();
  const vmm = await Vmm.create({
    scheduler: { plugin: new URL("../plugins/rr.ts", import.meta.url).href, slots: 1 },
  });
  let data: TraceData;
  try {
    const spin = await vmm.createVm({
      name: "spin",
      kernel: KERNEL,
      cmdline: "workload=spin seconds=0",
    });
    const ipi = await vmm.createVm({
      name: "ipi",
      vcpus: 2,
      kernel: KERNEL,
      cmdline: "workload=ipi rounds=1000000",
    });
    await spin.start();
    await ipi.start();
    await sleep(800);
    data = await vmm.scheduler!.trace();
  } finally {
    await vmm.close();
  }
  const { model, img } = await render(data);
  checkCommon(model, img);
  assertEquals(model.vms, ["spin", "ipi"]);
  const slot = model.rows[0];
  // The widest grants of each VM: their colour at their centre.
  for (let vm = 0; vm < 2; vm++) {
    const boxes = slot.boxes.filter((b) => b.vm === vm && b.w >= 4).sort((a, b) => b.w - a.w);
    assert(boxes.length > 0, `no box of ${model.vms[vm]} 4 px wide`);
    for (const b of boxes.slice(0, 5)) {
      assertColor(img, b.x + b.w / 2, slot.y + slot.h / 2, vmColor(vm), `${model.vms[vm]} box`);
    }
  }
});
