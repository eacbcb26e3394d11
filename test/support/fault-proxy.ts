/**
 * A TCP fault proxy for tests: it sits between a client (the gateway) and a
 * server (RabbitMQ) on loopback and breaks the path between them on command.
 *
 * Every accepted connection becomes a *pair*: the client's socket and a new
 * socket to the target. Bytes are copied both ways, chunk by chunk, in order.
 *
 * Faults:
 * - `cut()` destroys every open pair now (both sockets, as a crashed peer or
 *   a reset would).
 * - `blackhole(true)` stops forwarding both ways while keeping the sockets
 *   open, which is what a SIGSTOPped or partitioned broker looks like. Bytes
 *   are **held, not dropped**: the proxy stops reading both sockets, so the
 *   senders' kernel buffers fill as they would against a stalled peer, and a
 *   close from either side is held too. `blackhole(false)` delivers what was
 *   held, in order, then any held close. New connections accepted during a
 *   black-hole are held the same way.
 * - `delay(ms)` adds `ms` of latency to every chunk from now on (0 to stop);
 *   order is kept even when the delay changes.
 * - `cutAfterConnect(ms)` cuts every *new* pair `ms` after it was accepted
 *   (`undefined` to stop): the "drops again right after reconnect" fault.
 * - `refuse(true)` closes new connections as soon as they are accepted.
 *
 * Listens on 127.0.0.1 only and connects only to the target it was given.
 *
 * @example
 * const proxy = new FaultProxy({ targetHost: '127.0.0.1', targetPort: 5672 });
 * const port = await proxy.listen();
 * // point the gateway at amqp://127.0.0.1:<port>, then:
 * proxy.cut();
 * await proxy.close();
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { once } from 'node:events';

export interface FaultProxyOptions {
  /** Where connections are forwarded. Must be a loopback address. */
  targetHost: string;
  targetPort: number;
  /** Port to listen on. @default 0 (a free one) */
  port?: number;
}

/** One direction of a pair: chunks wait here while delayed or black-holed. */
class Pipe {
  private readonly queue: { chunk: Buffer; dueAt: number }[] = [];
  private timer: NodeJS.Timeout | undefined;
  private ended = false;
  private waitingDrain = false;

  constructor(
    private readonly from: Socket,
    private readonly to: Socket,
    private readonly proxy: FaultProxy,
    toTarget: boolean,
  ) {
    from.on('data', (chunk: Buffer) => {
      if (toTarget) proxy.bytesToTarget += chunk.length;
      this.queue.push({ chunk, dueAt: Date.now() + proxy.delayMs });
      this.flush();
    });
    from.on('end', () => {
      this.ended = true;
      this.flush();
    });
  }

  /** Writes every chunk that is due, unless the proxy is black-holed. */
  flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.proxy.blackholed || this.to.destroyed) return;
    const now = Date.now();
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      if (head.dueAt > now) {
        this.timer = setTimeout(() => this.flush(), head.dueAt - now);
        return;
      }
      this.queue.shift();
      if (!this.to.write(head.chunk) && !this.waitingDrain) {
        // Act on `false`: stop reading the source until the target drains.
        this.waitingDrain = true;
        this.from.pause();
        this.to.once('drain', () => {
          this.waitingDrain = false;
          if (!this.proxy.blackholed) this.from.resume();
        });
      }
    }
    if (this.ended) this.to.end();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
  }
}

class Pair {
  readonly upstream: Socket;
  private readonly pipes: Pipe[];
  private closed = false;
  private closeHeld = false;
  private cutTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly client: Socket,
    private readonly proxy: FaultProxy,
  ) {
    this.upstream = connect({ host: proxy.targetHost, port: proxy.targetPort });
    client.setNoDelay(true);
    this.upstream.setNoDelay(true);
    this.pipes = [new Pipe(client, this.upstream, proxy, true), new Pipe(this.upstream, client, proxy, false)];
    const onGone = (): void => {
      if (proxy.blackholed) this.closeHeld = true;
      else this.destroy();
    };
    for (const s of [client, this.upstream]) {
      s.on('error', () => {}); // a reset is an expected fault here; 'close' follows
      s.on('close', onGone);
    }
    if (proxy.blackholed) this.hold();
    if (proxy.cutAfterMs !== undefined) this.cutTimer = setTimeout(() => this.destroy(), proxy.cutAfterMs);
  }

  hold(): void {
    this.client.pause();
    this.upstream.pause();
  }

  release(): void {
    if (this.closeHeld) {
      this.destroy();
      return;
    }
    this.client.resume();
    this.upstream.resume();
    for (const p of this.pipes) p.flush();
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.cutTimer) clearTimeout(this.cutTimer);
    for (const p of this.pipes) p.stop();
    this.client.destroy();
    this.upstream.destroy();
    this.proxy.forget(this);
  }
}

export class FaultProxy {
  readonly targetHost: string;
  readonly targetPort: number;
  /** @internal */ delayMs = 0;
  /** @internal */ blackholed = false;
  /** @internal */ cutAfterMs: number | undefined;
  private refusing = false;
  private readonly pairs = new Set<Pair>();
  private readonly server: Server;
  private readonly port: number;
  /** Connections accepted since the proxy started (refused ones included). */
  accepted = 0;
  /** Bytes the clients sent towards the target since the proxy started. */
  bytesToTarget = 0;

  constructor(options: FaultProxyOptions) {
    if (!['127.0.0.1', 'localhost', '::1'].includes(options.targetHost)) {
      throw new Error(`FaultProxy: targetHost must be a loopback address, not ${options.targetHost}`);
    }
    this.targetHost = options.targetHost;
    this.targetPort = options.targetPort;
    this.port = options.port ?? 0;
    this.server = createServer((socket) => this.accept(socket));
  }

  /** Starts listening on 127.0.0.1; resolves with the port. */
  async listen(): Promise<number> {
    this.server.listen(this.port, '127.0.0.1');
    await once(this.server, 'listening');
    return (this.server.address() as { port: number }).port;
  }

  /** Open connection pairs. */
  get connections(): number {
    return this.pairs.size;
  }

  /** Destroys every open connection pair now. */
  cut(): void {
    for (const pair of [...this.pairs]) pair.destroy();
  }

  /** Stops (`true`) or restarts (`false`) forwarding; held bytes are delivered on `false`. */
  blackhole(on: boolean): void {
    if (this.blackholed === on) return;
    this.blackholed = on;
    for (const pair of [...this.pairs]) {
      if (on) pair.hold();
      else pair.release();
    }
  }

  /** Adds `ms` of latency to every chunk forwarded from now on (0: none). */
  delay(ms: number): void {
    this.delayMs = Math.max(0, ms);
  }

  /** Cuts every new connection `ms` after it is accepted; `undefined` stops it. */
  cutAfterConnect(ms: number | undefined): void {
    this.cutAfterMs = ms;
  }

  /** Closes new connections at once (`true`) or accepts them again (`false`). */
  refuse(on: boolean): void {
    this.refusing = on;
  }

  /** Stops listening and destroys every pair. Idempotent. */
  async close(): Promise<void> {
    this.cut();
    if (!this.server.listening) return;
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** @internal */
  forget(pair: Pair): void {
    this.pairs.delete(pair);
  }

  private accept(socket: Socket): void {
    this.accepted += 1;
    if (this.refusing) {
      socket.on('error', () => {});
      socket.destroy();
      return;
    }
    this.pairs.add(new Pair(socket, this));
  }
}
