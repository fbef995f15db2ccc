/**
 * `deno task bench:scenarios [--seconds N] [--only NAME]`: every scenario of
 * `bench/scenarios/` on KVM under every built-in policy and under `host` (Linux's scheduler,
 * the baseline, measured in the same run), then `bench/results/scenarios.json` and the
 * README's "Results" table between its markers.
 */
import { parseArgs } from "node:util";
import { formatResult, type ScenarioResult } from "../src/scenario/result.ts";
import { runScenarioKvm } from "../src/scenario/run_kvm.ts";
import { loadScenario } from "../src/scenario/scenario.ts";

const ROOT = new URL("../", import.meta.url);
const POLICIES = ["host", "rr", "credit", "credit2", "rtds", "gang"];
const ORDER = ["io-vs-hog", "weights", "caps", "attacker", "rt", "lock", "overcommit"];

/** The headline metric of each scenario, as table text. */
const METRIC: Record<string, { label: string; cell: (r: ScenarioResult) => string }> = {
  "io-vs-hog": {
    label: "echo req/s of 1000 offered; p99 ms",
    cell: (r) => {
      const e = r.vms.find((v) => v.name === "echo")!;
      return `${e.throughput.toFixed(0)}; ${(e.p99Us / 1000).toFixed(1)}`;
    },
  },
  weights: {
    label:
      "shares % of the slot (want 14.3 / 28.6 / 57.1); worst 1 s window of the VMs' CPU, pp off",
    cell: (r) => {
      const weights = r.vms.reduce((s, v) => s + v.weight, 0);
      const off = Math.max(...r.vms.map((v) => {
        const want = v.weight / weights;
        return Math.max(Math.abs(v.vmShareMin - want), Math.abs(v.vmShareMax - want));
      }));
      return `${r.vms.map((v) => (v.share * 100).toFixed(1)).join(" / ")}; ${
        (off * 100).toFixed(1)
      }`;
    },
  },
  caps: {
    label: "capped (25 %) / free share %",
    cell: (r) => r.vms.map((v) => (v.share * 100).toFixed(1)).join(" / "),
  },
  attacker: {
    label: "attacker / honest share %; guest work, attacker / honest",
    cell: (r) => {
      // The share is its EMT's CPU: its guest kernel's and the VMM's work for its halts included.
      // The work ratio is what the two guests' ring-3 loops got done, the same loop on both sides.
      const [a, h] = r.vms;
      return `${r.vms.map((v) => (v.share * 100).toFixed(1)).join(" / ")}; ${
        (a.throughput / h.throughput).toFixed(2)
      }`;
    },
  },
  rt: {
    label: "deadline misses / jobs",
    cell: (r) => {
      const m = r.vms.reduce((s, v) => s + v.misses, 0), j = r.vms.reduce((s, v) => s + v.jobs, 0);
      return `${m} / ${j}`;
    },
  },
  lock: {
    label: "lock acquisitions/s",
    cell: (r) => r.vms.find((v) => v.name === "lock")!.throughput.toFixed(0),
  },
  overcommit: {
    label: "Jain's index; worst wake p99 ms",
    cell: (r) => {
      const p99s = r.vms.map((v) => v.p99Us).filter((x) => Number.isFinite(x));
      const p99 = p99s.length ? (Math.max(...p99s) / 1000).toFixed(1) : "-";
      return `${r.jain.toFixed(3)}; ${p99}`;
    },
  },
};

/** The README table of `results`. */
export function resultsTable(results: ScenarioResult[], command: string): string {
  const lines = [
    `| scenario | metric | ${POLICIES.join(" | ")} |`,
    `| --- | --- | ${POLICIES.map(() => "---").join(" | ")} |`,
  ];
  for (const name of ORDER) {
    const m = METRIC[name];
    const cells = POLICIES.map((p) => {
      const r = results.find((x) => x.scenario === name && x.policy === p);
      if (!r) return "-";
      return m.cell(r) + (r.ejections.length ? " (ejected)" : "");
    });
    lines.push(`| ${name} | ${m.label} | ${cells.join(" | ")} |`);
  }
  return `${lines.join("\n")}\n\nMeasured with \`${command}\` on ${
    new Date().toISOString().slice(0, 10)
  }; \`host\` is the same VMs with no slots (Linux schedules the vCPU threads, confined to as many CPUs as the scenario has slots, weights as nice levels).`;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { seconds: { type: "string" }, only: { type: "string" } },
  });
  const seconds = values.seconds ? Number(values.seconds) : undefined;
  const results: ScenarioResult[] = [];
  for (const name of ORDER) {
    if (values.only && values.only !== name) continue;
    const scenario = await loadScenario(new URL(`bench/scenarios/${name}.json`, ROOT).pathname);
    for (const p of POLICIES) {
      const policy = p === "host" ? "host" : new URL(`plugins/${p}.ts`, ROOT).href;
      const r = await runScenarioKvm(scenario, { policy, seconds });
      console.log(formatResult(r) + "\n");
      results.push(r);
    }
  }
  await Deno.mkdir(new URL("bench/results/", ROOT), { recursive: true });
  await Deno.writeTextFile(
    new URL("bench/results/scenarios.json", ROOT),
    JSON.stringify(results, null, 2) + "\n",
  );
  const command = `deno task bench:scenarios${
    values.seconds ? ` --seconds ${values.seconds}` : ""
  }`;
  const table = resultsTable(results, command);
  console.log(table);
  if (!values.only) {
    const readme = new URL("README.md", ROOT);
    const text = await Deno.readTextFile(readme);
    const begin = "<!-- scenarios:begin -->", end = "<!-- scenarios:end -->";
    const i = text.indexOf(begin), j = text.indexOf(end);
    if (i >= 0 && j > i) {
      await Deno.writeTextFile(
        readme,
        text.slice(0, i + begin.length) + "\n" + table + "\n" + text.slice(j),
      );
      console.log("README.md: Results table updated");
    }
  }
}
