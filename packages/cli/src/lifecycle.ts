import { OptionError } from '@warren/gateway';

/** How a `warren serve` process stops: `drain` on SIGTERM, `close` on SIGINT. */
export type StopHow = 'drain' | 'close';

/**
 * Why the gateway could not start, in one line that says what to change
 * (without the `warren serve: ` prefix).
 */
export function describeStartFailure(err: unknown, input: Record<string, unknown>): string {
  if (err instanceof OptionError) return err.message;
  const code = (err as NodeJS.ErrnoException).code;
  const where = `${String(input.host ?? 'all interfaces')} port ${String(input.port ?? 4000)}`;
  if (code === 'EADDRINUSE') return `${where} is in use (choose another with --port or WARREN_PORT)`;
  if (code === 'ENOTFOUND' || code === 'EADDRNOTAVAIL' || code === 'EACCES' || code === 'EAI_AGAIN') {
    return `cannot listen on ${where} (${code}); check --host / WARREN_HOST and --port / WARREN_PORT`;
  }
  return (err as Error).message;
}

/** The exit status of a start failure: 2 for a bad option, else 1. */
export function startFailureStatus(err: unknown): number {
  return err instanceof OptionError ? 2 : 1;
}
