/** The demo's closing words come from its two runs' numbers, whichever way they fall. */
import { match } from "node:assert/strict";
import { whatChanged } from "../src/cli/demo.ts";
import { test } from "./helpers/deadline.ts";

test("demo: what changed is said from the numbers, not assumed", () => {
  const linux = { heavy: 0.47, light: 0.47, echoP99Ms: 4.4, used: 0.995 };
  const credit = { heavy: 0.6, light: 0.3, echoP99Ms: 0.9, used: 0.95 };
  let s = whatChanged(linux, credit, "credit");
  match(
    s,
    /Linux: heavy 47\.0 %, light 47\.0 % \(1\.00:1\); credit: heavy 60\.0 %, light 30\.0 % \(2\.00:1\)/,
  );
  match(s, /credit splits what echo leaves as the weights say; Linux's nice levels do not\./);
  match(s, /echo p99 +Linux: 4\.40 ms; credit: 0\.90 ms: 4\.9x lower\./);
  match(s, /CPU used +Linux: 99\.5 % by the VMs; credit: 95\.0 %/);
  // The other way round: a policy that does worse is said to.
  s = whatChanged(credit, { heavy: 0.45, light: 0.45, echoP99Ms: 20, used: 0.9 }, "rr");
  match(s, /rr is below the weights' 2:1; Linux's nice levels come close too\./);
  match(s, /echo p99 .*: 22\.2x higher under rr\./);
});
