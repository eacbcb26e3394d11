import type { IncomingMessage } from 'node:http';
import { PATHS, WarrenError } from '@warren/protocol';
import { parseList } from './options.js';

/** Longest request target (path and query) accepted. */
export const MAX_URL_LENGTH = 2048;

/** Whether a request asks for Server-Sent Events. */
export function wantsEventStream(req: IncomingMessage): boolean {
  return /\btext\/event-stream\b/.test(req.headers.accept ?? '');
}

/**
 * The raw path and the query of a request. The raw path, not a normalised
 * one: `/a/../b` must be refused, not resolved.
 * @throws WarrenError `URI_TOO_LONG`, `INVALID_REQUEST`
 */
export function parseTarget(req: IncomingMessage): { path: string; query: URLSearchParams } {
  const target = req.url ?? '';
  if (target.length > MAX_URL_LENGTH) throw new WarrenError('URI_TOO_LONG', `the URL is longer than ${MAX_URL_LENGTH} characters`);
  if (!target.startsWith('/')) throw new WarrenError('INVALID_REQUEST', 'the request target must be a path');
  const q = target.indexOf('?');
  return { path: q < 0 ? target : target.slice(0, q), query: new URLSearchParams(q < 0 ? '' : target.slice(q + 1)) };
}

/**
 * Which paths are the gateway's: `/_warren/*`, and the push routes
 * (`--push-routes`, every path without it) less the application's
 * (`--app-routes`).
 */
export class Routes {
  private readonly push: string[] | undefined;
  private readonly app: string[] | undefined;

  constructor(
    pushRoutes: string | undefined,
    appRoutes: string | undefined,
    /** The decider is the application's (`onUpgrade`): it takes streams only. */
    private readonly custom: boolean,
  ) {
    this.push = pushRoutes === undefined ? undefined : parseList(pushRoutes);
    this.app = appRoutes === undefined ? undefined : parseList(appRoutes);
  }

  /** `true` for a path under the push routes and not under the app routes. */
  isPushRoute(path: string): boolean {
    if (this.app?.some((prefix) => path.startsWith(prefix))) return false;
    return this.push === undefined || this.push.some((prefix) => path.startsWith(prefix));
  }

  /** Attached to an app's server: whether a request is the gateway's to look at (push routes and `/_warren/*`; only the probes under an application's decider). */
  claims(req: IncomingMessage, upgrading: boolean): boolean {
    const target = req.url ?? '';
    const q = target.indexOf('?');
    const path = q < 0 ? target : target.slice(0, q);
    // The probes answer whoever decides the upgrades: an orchestrator asks them of every gateway.
    if (path === PATHS.live || path === PATHS.ready || path === PATHS.health) return true;
    if (path.startsWith(PATHS.prefix)) return !this.custom;
    if (!path.startsWith('/') || !this.isPushRoute(path)) return false;
    return !this.custom || upgrading || (req.method === 'GET' && wantsEventStream(req));
  }
}
