// The access log (--access-log), request ids (X-Request-Id) and a pino logger (issue 14, "Logs").
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { IncomingHttpHeaders } from 'node:http';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { WebSocket } from 'ws';
import { createGateway, createLogger, type Logger } from '@warren/gateway';
import { BROKERS, httpPublish, rawRequest, readSse, startGateway, unique, until, WARREN_BIN, type TestGateway } from './support/index.js';
import { rawSocket } from './support/raw-socket.js';
import { startTrustingApp, type TrustingApp } from './support/trusting-app.js';

type Line = Record<string, any>;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A logger that keeps every line it is given, parsed. */
function capture(): { logger: Logger; lines: Line[]; access(): Line[] } {
  const lines: Line[] = [];
  return {
    logger: createLogger('debug', (line) => lines.push(JSON.parse(line) as Line)),
    lines,
    access: () => lines.filter((l) => l.msg === 'access'),
  };
}

/** The access line of the request `id` (waits for it: streams log when they end). */
async function lineOf(access: () => Line[], id: string): Promise<Line> {
  await until(() => access().some((l) => l.requestId === id), `the access line of ${id}`, 5000);
  const found = access().filter((l) => l.requestId === id);
  assert.equal(found.length, 1, `one line per request: ${JSON.stringify(found)}`);
  return found[0]!;
}

const idOf = (headers: IncomingHttpHeaders): string => String(headers['x-request-id']);

/** A WebSocket, open, with the headers of its 101. */
async function openSocket(url: string, headers: Record<string, string> = {}): Promise<{ ws: WebSocket; headers: IncomingHttpHeaders }> {
  const ws = new WebSocket(url, { headers });
  const answer = new Promise<IncomingHttpHeaders>((resolve) => ws.once('upgrade', (res) => resolve(res.headers)));
  await once(ws, 'open');
  return { ws, headers: await answer };
}

/** A WebSocket the gateway refuses: its status and headers. */
function refusedSocket(url: string): Promise<{ status: number; headers: IncomingHttpHeaders }> {
  const ws = new WebSocket(url);
  ws.on('error', () => undefined);
  return new Promise((resolve) =>
    ws.once('unexpected-response', (_req, res) => resolve({ status: res.statusCode ?? 0, headers: res.headers })),
  );
}

for (const kind of BROKERS) {
  describe(`the access log, on the ${kind} broker`, () => {
    let gw: TestGateway;
    const log = capture();
    before(async () => {
      gw = await startGateway(kind, { accessLog: 'logger', logger: log.logger });
    });
    after(() => gw.close());

    it('logs a long-poll once answered: no query, the id it answered with, who read, the bytes both ways', async () => {
      const channel = `/${unique('log-poll-')}`;
      const consumer = unique('c');
      const res = await rawRequest(gw.url, `${channel}?timeout=0.2&token=not-for-the-log`, { headers: { 'consumer-id': consumer } });
      assert.equal(res.status, 204);
      assert.match(idOf(res.headers), UUID);
      const line = await lineOf(log.access, idOf(res.headers));
      assert.equal(line.method, 'GET');
      assert.equal(line.path, channel);
      assert.equal(line.status, 204);
      assert.equal(line.transport, 'long-poll');
      assert.equal(line.consumer, 'identified');
      assert.equal(line.client, '127.0.0.1');
      assert.ok(line.durationMs >= 150, `the poll waited its 0.2 s: ${line.durationMs}`);
      assert.ok(line.bytesIn > channel.length && line.bytesOut > 0, JSON.stringify(line));
      assert.equal(line.reason, undefined);
      assert.doesNotMatch(JSON.stringify(log.lines), /not-for-the-log/);
    });

    it('logs an SSE stream when it ends, with its bytes and why it ended', async () => {
      const channel = `/${unique('log-sse-')}`;
      const sse = readSse(gw.url, channel);
      assert.equal(await sse.status, 200);
      const id = idOf(await sse.headers);
      assert.match(id, UUID);
      const body = 'x'.repeat(5000);
      await until(async () => (await httpPublish(gw.url, channel, body)).status === 200 && sse.events.length > 0, 'a delivery');
      assert.equal(
        log.access().find((l) => l.requestId === id),
        undefined,
        'an open stream has no line yet',
      );
      sse.close();
      const line = await lineOf(log.access, id);
      assert.equal(line.transport, 'sse');
      assert.equal(line.status, 200);
      assert.equal(line.consumer, 'anonymous');
      assert.equal(line.reason, 'client-gone');
      assert.ok(line.bytesOut > body.length, `the event counts: ${line.bytesOut}`);
      // The publish itself is a line of its own.
      assert.ok(log.access().some((l) => l.transport === 'publish' && l.status === 200 && l.path === '/_warren/publish'));
    });

    it('logs a WebSocket when it closes: 101, the frames both ways, and the id of its handshake', async () => {
      const channel = `/${unique('log-ws-')}`;
      const { ws, headers } = await openSocket(`${gw.url.replace('http', 'ws')}${channel}?consumer_id=${unique('w')}`);
      const got = once(ws, 'message');
      await until(async () => (await httpPublish(gw.url, channel, 'hello socket')).status === 200, 'a publish');
      await got;
      ws.send('x'.repeat(3000));
      ws.close();
      const line = await lineOf(log.access, idOf(headers));
      assert.equal(line.transport, 'websocket');
      assert.equal(line.status, 101);
      assert.equal(line.path, channel);
      assert.equal(line.consumer, 'identified');
      assert.equal(line.reason, 'client-gone');
      assert.ok(line.bytesIn > 3000, `the client's frame counts: ${line.bytesIn}`);
      assert.ok(line.bytesOut > 'hello socket'.length, JSON.stringify(line));
    });

    it('logs refused requests with their status, and answers them with their id', async () => {
      const bad = await rawRequest(gw.url, '/news?timeout=0', { headers: { 'consumer-id': 'not valid!' } });
      assert.equal(bad.status, 400);
      const poll = await lineOf(log.access, idOf(bad.headers));
      assert.deepEqual([poll.status, poll.transport, poll.path], [400, 'long-poll', '/news']);
      const socket = await refusedSocket(`${gw.url.replace('http', 'ws')}/_warren/nope`);
      assert.equal(socket.status, 404);
      const upgrade = await lineOf(log.access, idOf(socket.headers));
      assert.deepEqual([upgrade.status, upgrade.transport, upgrade.reason], [404, 'websocket', undefined]);
      const publish = await rawRequest(gw.url, '/_warren/publish?channel=/x', { method: 'POST', body: 'no token' });
      assert.equal((await lineOf(log.access, idOf(publish.headers))).status, 401);
    });

    it('ends streams with the reason the gateway ended them for (shutdown)', async () => {
      const sse = readSse(gw.url, `/${unique('log-end-')}`);
      assert.equal(await sse.status, 200);
      const id = idOf(await sse.headers);
      await gw.close();
      const line = await lineOf(log.access, id);
      assert.equal(line.reason, 'shutdown');
    });
  });
}

describe('the access log is off by default', () => {
  it('writes no line, through the logger or anywhere, for polls, streams and sockets', async () => {
    const log = capture();
    const gw = await startGateway('memory', { logger: log.logger });
    try {
      const res = await rawRequest(gw.url, '/news?timeout=0');
      assert.match(idOf(res.headers), UUID, 'request ids are always on');
      const sse = readSse(gw.url, '/news');
      await sse.status;
      sse.close();
      const { ws } = await openSocket(`${gw.url.replace('http', 'ws')}/news`);
      ws.close();
      await once(ws, 'close');
      await rawRequest(gw.url, '/_warren/live');
    } finally {
      await gw.close();
    }
    assert.deepEqual(log.access(), []);
    assert.ok(
      log.lines.some((l) => l.msg === 'gateway listening'),
      'the logger itself works',
    );
  });
});

describe('request ids and the application', () => {
  let app: TrustingApp;
  let direct: TestGateway;
  let proxied: TestGateway;
  const log = capture();
  before(async () => {
    app = await startTrustingApp({ switching: true });
    const common = {
      upstream: app.url,
      pushRoutes: '/live/',
      authUrl: `${app.url}/auth`,
      accessLog: 'logger' as const,
      logger: log.logger,
    };
    direct = await startGateway('memory', common);
    // The test client stands for a proxy in front of this one.
    proxied = await startGateway('memory', { ...common, trustedProxies: '127.0.0.1' });
  });
  after(async () => {
    await direct.close();
    await proxied.close();
    await app.close();
  });
  const seenBy = (path: string) => app.requests.filter((r) => r.url.startsWith(path)).at(-1)!;

  it('passes a proxied request its id, answers with it, and logs it as proxy', async () => {
    const path = `/${unique('page-')}`;
    const res = await rawRequest(direct.url, path);
    assert.equal(res.status, 200);
    const id = idOf(res.headers);
    assert.match(id, UUID);
    assert.equal(seenBy(path).headers['x-request-id'], id);
    const line = await lineOf(log.access, id);
    assert.deepEqual([line.transport, line.status, line.path], ['proxy', 200, path]);
  });

  it("generates its own id for an untrusted client's X-Request-Id: never forwarded, logged or answered as sent", async () => {
    const path = `/${unique('page-')}`;
    const res = await rawRequest(direct.url, path, { headers: { 'x-request-id': 'forged-id-123' } });
    const id = idOf(res.headers);
    assert.match(id, UUID);
    assert.equal(seenBy(path).headers['x-request-id'], id);
    const poll = await rawRequest(direct.url, `/live/${unique('c')}?timeout=0`, { headers: { 'x-request-id': 'forged-id-123' } });
    assert.equal(poll.status, 204);
    assert.equal(seenBy('/auth').headers['x-request-id'], idOf(poll.headers));
    assert.doesNotMatch(JSON.stringify(log.lines), /forged-id-123/);
    assert.doesNotMatch(JSON.stringify(app.requests), /forged-id-123/);
  });

  it("keeps a trusted proxy's X-Request-Id: answered, passed to the app and its auth endpoint, logged", async () => {
    const path = `/${unique('page-')}`;
    const res = await rawRequest(proxied.url, path, { headers: { 'x-request-id': 'edge-7f3a/1' } });
    assert.equal(idOf(res.headers), 'edge-7f3a/1');
    assert.equal(seenBy(path).headers['x-request-id'], 'edge-7f3a/1');
    const channel = `/live/${unique('c')}`;
    const poll = await rawRequest(proxied.url, `${channel}?timeout=0`, {
      headers: { 'x-request-id': 'edge-poll-2', cookie: 'session=alice' },
    });
    assert.equal(poll.status, 204);
    assert.equal(idOf(poll.headers), 'edge-poll-2');
    const auth = seenBy('/auth');
    assert.deepEqual([auth.headers['x-request-id'], auth.headers['warren-channel']], ['edge-poll-2', channel]);
    const line = await lineOf(log.access, 'edge-poll-2');
    assert.deepEqual([line.transport, line.status, line.consumer], ['long-poll', 204, 'vouched']);
  });

  it("replaces a trusted proxy's X-Request-Id that is too long, or not of the safe characters", async () => {
    for (const bad of ['x'.repeat(129), 'has space', 'quote"d', 'a,b']) {
      const path = `/${unique('page-')}`;
      const res = await rawRequest(proxied.url, path, { headers: { 'x-request-id': bad } });
      const id = idOf(res.headers);
      assert.match(id, UUID, `${bad} is replaced`);
      assert.equal(seenBy(path).headers['x-request-id'], id);
    }
    const longest = 'y'.repeat(128);
    assert.equal(idOf((await rawRequest(proxied.url, '/page', { headers: { 'x-request-id': longest } })).headers), longest);
  });

  it('sends the id of a socket with each of its messages to the app, and logs a tunnelled WebSocket', async () => {
    const channel = `/live/${unique('room-')}`;
    const { ws, headers } = await openSocket(`${proxied.url.replace('http', 'ws')}${channel}`, { 'x-request-id': 'edge-ws-3' });
    assert.equal(idOf(headers), 'edge-ws-3');
    ws.send('hello app');
    await until(() => app.requests.some((r) => r.method === 'POST' && r.url === channel), 'the message to reach the app');
    assert.equal(app.requests.find((r) => r.method === 'POST' && r.url === channel)!.headers['x-request-id'], 'edge-ws-3');
    ws.close();
    assert.equal((await lineOf(log.access, 'edge-ws-3')).transport, 'websocket');

    // The app's own WebSocket, tunnelled: its 101 is the app's, and carries the id.
    const client = await rawSocket(direct.url);
    client.write(
      'GET /chat HTTP/1.1\r\nHost: gw.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-Request-Id: forged-tunnel\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
    await until(() => client.received().includes('switched\n'), 'the 101 of the app', 5000);
    assert.match(client.received(), /^HTTP\/1\.1 101 /);
    const id = /\r\nx-request-id: (\S+)\r\n/i.exec(client.received())![1]!;
    assert.match(id, UUID);
    assert.equal(app.upgrades.at(-1)!.headers['x-request-id'], id);
    client.destroy();
    const line = await lineOf(log.access, id);
    assert.deepEqual([line.transport, line.status, line.path], ['websocket-proxy', 101, '/chat']);
  });
});

describe('a pino logger as the logger option', () => {
  it('is called the pino way (fields first): fields stay properties, access lines included', async () => {
    const lines: Line[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const text of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(text) as Line);
        done();
      },
    });
    const logger = pino({ level: 'info', base: { service: 'warren-test' } }, destination);
    const gw = createGateway({ port: 0, host: '127.0.0.1', logger, accessLog: 'logger' });
    const { port } = await gw.listen();
    try {
      const res = await rawRequest(`http://127.0.0.1:${port}`, '/news?timeout=0');
      await until(() => lines.some((l) => l.msg === 'access'), 'the access line');
      const listening = lines.find((l) => l.msg === 'gateway listening')!;
      assert.equal(listening.port, port, 'fields are properties of the line, not lost as format arguments');
      assert.deepEqual([listening.level, listening.service], [30, 'warren-test']);
      const access = lines.find((l) => l.msg === 'access')!;
      assert.deepEqual([access.requestId, access.status, access.transport], [idOf(res.headers), 204, 'long-poll']);
    } finally {
      await gw.close();
    }
  });
});

describe('warren serve --access-log stdout', () => {
  it('writes JSON lines only to stdout (the banner goes to stderr), one per request', async () => {
    const args = [WARREN_BIN, 'serve', '--port', '0', '--host', '127.0.0.1', '--log-level', 'warn', '--access-log', 'stdout'];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    try {
      await until(() => /Warren gateway on/.test(stderr) || child.exitCode !== null, 'warren serve to start', 15_000);
      const base = /Warren gateway on (http:\/\/\S+)/.exec(stderr)![1]!.replace('localhost', '127.0.0.1');
      const res = await rawRequest(base, '/news?timeout=0&access_token=hidden');
      assert.equal(res.status, 204);
      await until(() => stdout.includes('\n'), 'the access line');
      const lines = stdout.trim().split('\n');
      assert.equal(lines.length, 1, stdout);
      const line = JSON.parse(lines[0]!) as Line;
      assert.deepEqual(Object.keys(line), [
        'time',
        'requestId',
        'method',
        'path',
        'status',
        'transport',
        'durationMs',
        'bytesIn',
        'bytesOut',
        'consumer',
        'client',
      ]);
      assert.deepEqual([line.requestId, line.path, line.status, line.consumer], [idOf(res.headers), '/news', 204, 'anonymous']);
      assert.ok(!Number.isNaN(Date.parse(line.time)));
    } finally {
      child.kill('SIGINT');
      if (child.exitCode === null) await once(child, 'close');
    }
  });
});
