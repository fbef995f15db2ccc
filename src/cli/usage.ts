/**
 * Usage errors and help text plumbing shared by the CLI's commands.
 *
 * @module
 */

/** A bad command line: the CLI prints the message and exits with status 2. */
export class UsageError extends Error {
  /** @param message what is wrong, naming the flag */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Exit status for usage and configuration errors (as BSD's EX_USAGE family, `2` like getopt tools). */
export const EXIT_USAGE = 2;
