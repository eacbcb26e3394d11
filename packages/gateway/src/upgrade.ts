import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { PATHS, WarrenError } from '@warren/protocol';
import type { Admission } from './admission.js';
import { forgetAccess, noteAccess, type AccessLog } from './access-log.js';
import type { Upstream } from './upstream.js';
import { abortHandshake } from './http.js';
import type { Logger } from './logger.js';
import type { PushFront } from './push/open.js';
import { REQUEST_ID_HEADER } from './request-id.js';
import { parseTarget, type Routes } from './routes.js';

export interface UpgradeFrontDeps {
  log: Logger;
  access: AccessLog;
  routes: Routes;
  custom: boolean;
  upstream: Upstream;
  admission: Admission;
  push: PushFront;
  pushRoutes: string | undefined;
  /** An upgrade the gateway does not take, when attached to an application's server. */
  passUpgrade?: ((req: IncomingMessage, socket: Duplex, head: Buffer) => void) | undefined;
}

/**
 * `Upgrade: websocket` requests: checked like a GET ({@link handleUpgrade}),
 * then opened as push connections, tunnelled to the application, or
 * refused with one {@link abortHandshake} that writes the raw HTTP answer.
 */
export class UpgradeFront {
  constructor(private readonly deps: UpgradeFrontDeps) {}

  /** The `upgrade` listener. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    // A function of the module's: a closure made here would keep this call's request for the socket's life.
    socket.on('error', ignore);
    const requestId = this.deps.upstream.requestId(req);
    this.deps.access.upgrade(req, socket, requestId);
    noteAccess(req, { transport: 'websocket' });
    this.route(req, socket, head).catch((err: unknown) => {
      const status = abortHandshake(socket, err, this.deps.log, { [REQUEST_ID_HEADER]: requestId });
      noteAccess(req, { status });
    });
  }

  private async route(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const { custom, routes, admission, push } = this.deps;
    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket')
      throw new WarrenError('INVALID_REQUEST', 'only WebSocket upgrades are supported');
    const { path, query } = parseTarget(req);
    if (req.method !== 'GET') throw new WarrenError('METHOD_NOT_ALLOWED', 'a WebSocket upgrade is a GET');
    if (custom || path !== PATHS.socket) {
      if (path.startsWith(PATHS.prefix)) throw new WarrenError('NOT_FOUND', `no WebSocket endpoint ${path}`);
      // The application's own WebSocket (outside the push routes): tunnel it.
      if (!routes.isPushRoute(path)) return this.decline(req, socket, head, path);
    }
    admission.checkSocketOrigin(req);
    const opened = await push.open(
      'websocket',
      req,
      path,
      query,
      { socket, head },
      { [REQUEST_ID_HEADER]: this.deps.upstream.requestId(req) },
    );
    if (!opened) await this.decline(req, socket, head, path);
  }

  /** A WebSocket the gateway does not serve: the application's (attached or upstream), else 404. */
  private decline(req: IncomingMessage, socket: Duplex, head: Buffer, path: string): void | Promise<void> {
    const { passUpgrade, upstream, custom } = this.deps;
    if (passUpgrade !== undefined) {
      // The attached application's own WebSocket: its answer, and its log line, are the application's.
      forgetAccess(req);
      return passUpgrade(req, socket, head);
    }
    if (upstream.proxying) return upstream.tunnel(req, socket, head);
    throw new WarrenError(
      'NOT_FOUND',
      custom ? `no handler for ${path}` : `${path} is not under the push routes (${this.deps.pushRoutes})`,
    );
  }
}

function ignore(): void {}
