/**
 * {@linkcode runPool}: independent simulations side by side, a few at a time. Each simulation
 * of a plugin given by path or URL runs in its own sandbox Worker, so as many run at once as the
 * host has CPUs.
 *
 * @module
 */

/** The default number of simulations at once: the host's CPUs. */
export function defaultJobs(): number {
  return Math.max(1, navigator.hardwareConcurrency || 1);
}

/**
 * Runs `tasks` with at most `jobs` at once and resolves with their results in task order;
 * `onDone` sees each result as it comes. Rejects with the first task that rejects (the others
 * already started still finish, unobserved).
 */
export async function runPool<T>(
  tasks: (() => Promise<T>)[],
  jobs: number = defaultJobs(),
  onDone?: (result: T, index: number) => void,
): Promise<T[]> {
  const out = new Array<T>(tasks.length);
  let next = 0;
  let failed = false;
  const lane = async () => {
    while (next < tasks.length && !failed) {
      const i = next++;
      try {
        out[i] = await tasks[i]();
      } catch (e) {
        failed = true;
        throw e;
      }
      onDone?.(out[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, jobs), tasks.length) }, lane));
  return out;
}
