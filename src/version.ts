/**
 * The package's version. `deno.json`'s `version` is the same (tests/publish_test.ts holds
 * them, and CHANGELOG.md's latest release, equal); it is not imported from there because
 * `deno.json` has comments, which a JSON import cannot parse.
 *
 * @module
 */

/** The version of deno-vmm, as published (semver). */
export const VERSION = "0.1.0";
