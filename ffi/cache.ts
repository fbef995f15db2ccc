/**
 * The cache of what deno-vmm compiles on first use (the C shim, the built-in guest kernel):
 * `$XDG_CACHE_HOME/deno-vmm`, or `~/.cache/deno-vmm`. Entries are named by the SHA-256 of
 * their sources and flags, written beside their final name and renamed into place, so an edit
 * rebuilds and concurrent first uses never see a partial file.
 *
 * @module
 */

/** The cache directory: `$XDG_CACHE_HOME/deno-vmm`, else `$HOME/.cache/deno-vmm`. */
export function cacheDir(): string {
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  const home = Deno.env.get("HOME") ?? "/tmp";
  return `${xdg || `${home}/.cache`}/deno-vmm`;
}

/** Lower-case hex SHA-256 of `data` (text is hashed as UTF-8). */
export async function sha256Hex(data: string | Uint8Array): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The C compiler: `$CC`, else `cc`. */
export function compilerName(): string {
  return Deno.env.get("CC") || "cc";
}
