import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { createLogger } from '@warren/gateway';
import { signChannelToken } from '@warren/producer';
import { httpPublish, rawRequest, readSse, ROOT, startGateway, unique, until, type TestGateway } from './support/index.js';

const SECRET = 'a-token-secret-of-at-least-32-characters!';
const json = (body: string) => JSON.parse(body) as Record<string, any>;

async function startApp(): Promise<{ url: string; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [join(ROOT, 'test', 'support', 'upstream-app.mjs')], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  await until(() => /app on \d+/.test(out), 'the app to start');
  return {
    url: `http://127.0.0.1:${/app on (\d+)/.exec(out)![1]}`,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await once(child, 'close');
    },
  };
}

describe('signed channel tokens (--token-secret)', () => {
  let gw: TestGateway;
  const lines: string[] = [];
  before(async () => {
    gw = await startGateway('memory', { tokenSecret: SECRET, logger: createLogger('debug', (l) => lines.push(l)) });
  });
  after(() => gw.close());
  const token = (channels: string[], consumerId = 'u1', ttlMs = 60_000) => signChannelToken({ consumerId, channels, ttlMs }, SECRET);

  it('requires a token: 401 UNAUTHORIZED without one, on long-poll, SSE and WebSocket', async () => {
    const poll = await rawRequest(gw.url, '/news?timeout=0');
    assert.equal(poll.status, 401);
    assert.equal(json(poll.body).code, 'UNAUTHORIZED');
    assert.equal(await readSse(gw.url, '/news').status, 401);
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/news`);
    assert.equal(await new Promise<number>((r) => ws.once('unexpected-response', (_q, res) => r(res.statusCode ?? 0))), 401);
  });

  it('opens what the token covers (query or Bearer), as the consumer it names, and refuses the rest', async () => {
    const channel = `/${unique('tok-')}`;
    const t = token([channel, '/users/u1/*']);
    assert.equal((await rawRequest(gw.url, `${channel}?timeout=0&token=${t}`)).status, 204);
    assert.equal((await rawRequest(gw.url, `${channel}?timeout=0`, { headers: { authorization: `Bearer ${t}` } })).status, 204);
    assert.equal((await rawRequest(gw.url, `/users/u1/inbox?timeout=0&token=${t}`)).status, 204);
    const other = await rawRequest(gw.url, `/users/u2/inbox?timeout=0&token=${t}`);
    assert.equal(other.status, 403);
    assert.equal(json(other.body).code, 'FORBIDDEN');
    // The token's consumer owns the queue: a message waits for u1 whatever id the client sends.
    await httpPublish(gw.url, channel, 'for u1');
    const got = await rawRequest(gw.url, `${channel}?timeout=2&token=${t}`, { headers: { 'consumer-id': 'someone-else' } });
    assert.equal(got.status, 204, '"someone-else" reads u1/someone-else, a queue of its own');
    const own = await rawRequest(gw.url, `${channel}?timeout=2&token=${t}`);
    assert.equal(own.body, 'for u1');
  });

  it('refuses expired and tampered tokens', async () => {
    const expired = signChannelToken({ consumerId: 'u1', channels: ['/a'], expiresAt: Date.now() + 1000 }, SECRET, Date.now() - 5000);
    await new Promise((r) => setTimeout(r, 1100));
    const late = await rawRequest(gw.url, `/a?timeout=0&token=${expired}`);
    assert.equal(late.status, 401);
    assert.equal(json(late.body).code, 'TOKEN_EXPIRED');
    const good = token(['/a']);
    const [v, payload, sig] = good.split('.');
    const widened = Buffer.from(
      JSON.stringify({ ...JSON.parse(Buffer.from(payload!, 'base64url').toString()), ch: ['/a', '/b'] }),
    ).toString('base64url');
    for (const bad of [`${v}.${widened}.${sig}`, `${good.slice(0, -2)}xx`, 'v1.garbage']) {
      const res = await rawRequest(gw.url, `/b?timeout=0&token=${encodeURIComponent(bad)}`);
      assert.equal(res.status, 401);
      assert.equal(json(res.body).code, 'INVALID_TOKEN');
    }
  });

  it('closes a stream whose token expired, at the next re-authorization', async () => {
    const short = await startGateway('memory', { tokenSecret: SECRET, reauthIntervalMs: 200 });
    try {
      // Expiry is kept in whole seconds: 2 s ahead, rounded down, is 1 to 2 s from now.
      const t = signChannelToken(
        { consumerId: 'u1', channels: ['/ticking'], expiresAt: (Math.floor(Date.now() / 1000) + 2) * 1000 },
        SECRET,
      );
      const sse = readSse(short.url, `/ticking?token=${t}`);
      assert.equal(await sse.status, 200);
      const started = Date.now();
      await sse.closed;
      const lasted = Date.now() - started;
      assert.ok(lasted >= 800 && lasted < 3000, `closed after ${lasted} ms`);
      assert.match(sse.raw(), /: closing \(revoked\)/);
    } finally {
      await short.close();
    }
  });

  it('never writes a token or a message body to the log', async () => {
    const t = token(['/logged']);
    await rawRequest(gw.url, `/logged?timeout=0&token=${t}`);
    await rawRequest(gw.url, `/logged?timeout=0&token=${t}tampered`);
    await httpPublish(gw.url, '/logged', 'very-secret-body-text');
    await rawRequest(gw.url, `/logged?timeout=1&token=${t}`);
    assert.ok(lines.length > 0, 'the gateway logged something');
    const all = lines.join('');
    assert.equal(all.includes(t.split('.')[2]!), false, 'no token signature in the log');
    assert.equal(all.includes(t.split('.')[1]!), false, 'no token payload in the log');
    assert.equal(all.includes('very-secret-body-text'), false, 'no message body in the log');
    assert.equal(all.includes(SECRET), false);
  });
});

describe('re-authorization and connection caps with --auth-url', () => {
  let app: Awaited<ReturnType<typeof startApp>>;
  let gw: TestGateway;
  let alice: string;
  before(async () => {
    app = await startApp();
    gw = await startGateway('memory', {
      upstream: app.url,
      pushRoutes: '/live/',
      authUrl: `${app.url}/warren/auth`,
      authCacheMs: 0,
      reauthIntervalMs: 200,
      maxConnectionsPerIp: 3,
      maxConnectionsPerIdentity: 2,
    });
    alice = String((await rawRequest(app.url, '/login?user=alice')).headers['set-cookie']).split(';')[0]!;
  });
  after(async () => {
    await gw.close();
    await app.stop();
  });

  it("re-authorizes an open stream with its client's headers and request id, though it keeps no request", async () => {
    const dave = String((await rawRequest(app.url, '/login?user=dave')).headers['set-cookie']).split(';')[0]!;
    const stats = async (): Promise<{ authCalls: number; lastAuthHeaders: Record<string, string> }> =>
      JSON.parse((await rawRequest(app.url, '/stats')).body);
    const sse = readSse(gw.url, '/live/reauth', { cookie: dave, 'user-agent': 'reauth-test/1' });
    assert.equal(await sse.status, 200);
    const id = String((await sse.headers)['x-request-id']);
    const opened = (await stats()).authCalls;
    await until(async () => (await stats()).authCalls >= opened + 3, 'three re-authorizations');
    const { lastAuthHeaders: seen } = await stats();
    assert.deepEqual(
      [seen.cookie, seen['user-agent'], seen['x-request-id'], seen['warren-channel']],
      [dave, 'reauth-test/1', id, '/live/reauth'],
    );
    assert.doesNotMatch(sse.raw(), /closing/, 'still open: the app allowed it each time');
    sse.close();
  });

  it('caps open subscriptions per identity and per address (429 TOO_MANY_CONNECTIONS), and frees a slot when one closes', async () => {
    const bob = String((await rawRequest(app.url, '/login?user=bob')).headers['set-cookie']).split(';')[0]!;
    const a1 = readSse(gw.url, '/live/cap1', { cookie: alice });
    const a2 = readSse(gw.url, '/live/cap2', { cookie: alice });
    assert.equal(await a1.status, 200);
    assert.equal(await a2.status, 200);
    const a3 = await rawRequest(gw.url, '/live/cap3?timeout=0', { headers: { cookie: alice } });
    assert.equal(a3.status, 429);
    assert.equal(json(a3.body).code, 'TOO_MANY_CONNECTIONS');
    const b1 = readSse(gw.url, '/live/cap4', { cookie: bob });
    assert.equal(await b1.status, 200, 'bob is another identity');
    const b2 = await rawRequest(gw.url, '/live/cap5?timeout=0', { headers: { cookie: bob } });
    assert.equal(b2.status, 429, 'but the address has 3 open');
    a1.close();
    await until(
      async () => (await rawRequest(gw.url, '/live/cap3?timeout=0', { headers: { cookie: alice } })).status === 204,
      'a slot to free up',
    );
    a2.close();
    b1.close();
  });

  it('closes an SSE stream and drops a warren.v1 subscription once the app revokes the user', async () => {
    const carol = String((await rawRequest(app.url, '/login?user=carol')).headers['set-cookie']).split(';')[0]!;
    const sse = readSse(gw.url, '/live/room', { cookie: carol });
    assert.equal(await sse.status, 200);
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/_warren/ws`, 'warren.v1', { headers: { cookie: carol } });
    const frames: Array<Record<string, any>> = [];
    ws.on('message', (d) => frames.push(JSON.parse(d.toString())));
    await new Promise((r) => ws.once('open', r));
    // Another channel: a second stream of carol's on the same channel would take the first one over.
    ws.send(JSON.stringify({ type: 'subscribe', channel: '/live/room2' }));
    await until(() => frames.some((f) => f.type === 'subscribed'), 'subscribed');
    await rawRequest(app.url, '/revoke?user=carol');
    await sse.closed;
    assert.match(sse.raw(), /: closing \(revoked\)/);
    await until(
      () => frames.some((f) => f.type === 'error' && f.code === 'FORBIDDEN' && f.channel === '/live/room2'),
      'the subscription to be dropped',
    );
    await httpPublish(gw.url, '/live/room2', 'after the revocation');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(
      frames.some((f) => f.type === 'message'),
      false,
      'nothing more reaches carol',
    );
    ws.close();
  });
});
