/**
 * This process's child processes, for tests that check a sandbox leaves none behind.
 *
 * @module
 */

/** The pids of this process's children (`/proc/self/task/TID/children`, every thread). */
export function childPids(): number[] {
  const out: number[] = [];
  for (const t of Deno.readDirSync("/proc/self/task")) {
    try {
      const text = Deno.readTextFileSync(`/proc/self/task/${t.name}/children`).trim();
      if (text !== "") out.push(...text.split(/\s+/).map(Number));
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

/** Whether process `pid` exists (a zombie counts: it is not reaped yet). */
export function processExists(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** ns of CPU this whole process has used (`/proc/self/stat` utime + stime, in clock ticks). */
export function processCpuNs(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3.
  return (Number(fields[11]) + Number(fields[12])) * 1e7; // USER_HZ = 100
}
