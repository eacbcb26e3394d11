import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** One request the application received, as it saw it. */
export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  /** Who the app believes the user is: it trusts `Warren-Identity`, as docs/app-in-front.md tells apps to. */
  user: string | null;
  bodyBytes: number;
}

/** A raw upgrade the application received (with `switching`). */
export interface SeenUpgrade {
  headers: IncomingHttpHeaders;
  /** Bytes the client sent before the app answered 101 (must be none). */
  early: string;
  /** Bytes that came after the 101. */
  late: string;
}

export interface TrustingApp {
  url: string;
  requests: SeenRequest[];
  upgrades: SeenUpgrade[];
  /** The most auth requests the app was answering at once. */
  maxAuthInFlight(): number;
  close(): Promise<void>;
}

/**
 * A real web application, in process, of the kind Warren sits in front of:
 * it believes `Warren-Identity` (so a forged one reaching it is an account
 * takeover) and records every request it gets. By default it has no
 * WebSocket of its own: an `Upgrade` is answered like any GET (`200`,
 * keep-alive), as plain servers do. With `switching`, every upgrade is
 * switched after 200 ms, and what arrived before and after its `101` is
 * recorded.
 * `/auth` is an auth endpoint: `session=<user>` cookie → 204 vouching for
 * it; no session → 204 without vouching (public channels); `?delay=<ms>`
 * answers that much later.
 */
export async function startTrustingApp(opts: { switching?: boolean } = {}): Promise<TrustingApp> {
  const requests: SeenRequest[] = [];
  const upgrades: SeenUpgrade[] = [];
  let authInFlight = 0;
  let maxAuthInFlight = 0;
  const server: Server = createServer((req, res) => void serve(req, res));
  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let bodyBytes = 0;
    for await (const chunk of req) bodyBytes += (chunk as Buffer).length;
    const identity = req.headers['warren-identity'];
    const seen: SeenRequest = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      user: typeof identity === 'string' ? identity : null,
      bodyBytes,
    };
    requests.push(seen);
    if ((req.url ?? '').startsWith('/auth')) {
      authInFlight++;
      maxAuthInFlight = Math.max(maxAuthInFlight, authInFlight);
      const delay = Number(new URL(req.url ?? '', 'http://app').searchParams.get('delay') ?? 0);
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
      authInFlight--;
      const user = /(?:^|;\s*)session=([a-z0-9]+)/.exec(req.headers.cookie ?? '')?.[1];
      // Public channels: anyone may read, and only a session is vouched for.
      if (user === undefined) return void res.writeHead(204).end();
      return void res.writeHead(204, { 'warren-consumer-id': user }).end();
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(seen));
  }
  const upgraded = new Set<Socket>();
  if (opts.switching)
    server.on('upgrade', (req, socket: Socket, head: Buffer) => {
      upgraded.add(socket);
      const seen: SeenUpgrade = { headers: req.headers, early: head.toString(), late: '' };
      upgrades.push(seen);
      let switched = false;
      socket.on('data', (c: Buffer) => {
        if (switched) seen.late += c.toString();
        else seen.early += c.toString();
      });
      socket.on('error', () => undefined);
      socket.on('end', () => socket.end());
      setTimeout(() => {
        switched = true;
        socket.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\nswitched\n');
      }, 200);
    });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    upgrades,
    maxAuthInFlight: () => maxAuthInFlight,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        for (const socket of upgraded) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
