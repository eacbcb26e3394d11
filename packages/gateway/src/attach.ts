import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WarrenError } from '@warren/protocol';
import { abortHandshake, sendError } from './http.js';
import type { Logger } from './logger.js';

type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;
type UpgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

/** What the gateway takes on an application's server: whether a request is its own, and how to serve it. */
export interface Claimant {
  claims(req: IncomingMessage, upgrading: boolean): boolean;
  handle(req: IncomingMessage, res: ServerResponse): void;
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
}

/**
 * A gateway attached to an application's own server (`createGateway({ server })`):
 * it takes the listeners the server had, serves what it claims, hands the
 * rest to those listeners, and gives them back on {@link restore}.
 */
export class AttachedServer {
  private readonly requestListeners: RequestListener[];
  private readonly upgradeListeners: UpgradeListener[];
  private onRequest: RequestListener | undefined;
  private onUpgrade: UpgradeListener | undefined;

  constructor(
    private readonly server: Server,
    private readonly log: Logger,
  ) {
    this.requestListeners = server.listeners('request') as RequestListener[];
    this.upgradeListeners = server.listeners('upgrade') as UpgradeListener[];
  }

  /** Puts the gateway in front of the application's listeners. */
  install(gateway: Claimant): void {
    this.onRequest = (req, res) => (gateway.claims(req, false) ? gateway.handle(req, res) : this.passRequest(req, res));
    this.onUpgrade = (req, socket, head) =>
      gateway.claims(req, true) ? gateway.upgrade(req, socket, head) : this.passUpgrade(req, socket, head);
    this.server.removeAllListeners('request');
    this.server.removeAllListeners('upgrade');
    this.server.on('request', this.onRequest);
    this.server.on('upgrade', this.onUpgrade);
  }

  /** The application keeps its server, with its own listeners back. */
  restore(): void {
    if (this.onRequest !== undefined) this.server.off('request', this.onRequest);
    if (this.onUpgrade !== undefined) this.server.off('upgrade', this.onUpgrade);
    for (const listener of this.requestListeners) this.server.on('request', listener);
    for (const listener of this.upgradeListeners) this.server.on('upgrade', listener);
  }

  /** A request the gateway does not take: the application's. */
  passRequest(req: IncomingMessage, res: ServerResponse): void {
    if (this.requestListeners.length === 0) {
      sendError(res, new WarrenError('NOT_FOUND', `nothing serves ${req.url ?? ''}`), this.log);
      return;
    }
    for (const listener of this.requestListeners) listener.call(this.server, req, res);
  }

  /** An upgrade the gateway does not take: the application's. */
  passUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (this.upgradeListeners.length === 0) {
      abortHandshake(socket, new WarrenError('NOT_FOUND', `no WebSocket endpoint ${req.url ?? ''}`), this.log);
      return;
    }
    for (const listener of this.upgradeListeners) listener.call(this.server, req, socket, head);
  }
}
