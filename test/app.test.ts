import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { normalizeOptions } from '@warren/gateway';
import { httpPublish, rawRequest, readSse, ROOT, startGateway, unique, until, type TestGateway } from './support/index.js';

/** The test application, as its own process. */
async function startApp(): Promise<{ child: ChildProcess; url: string; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [join(ROOT, 'test', 'support', 'upstream-app.mjs')], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  await until(() => /app on \d+/.test(out), 'the app to start');
  const url = `http://127.0.0.1:${/app on (\d+)/.exec(out)![1]}`;
  return {
    child,
    url,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await once(child, 'close');
    },
  };
}

async function login(appUrl: string, user: string): Promise<string> {
  const res = await rawRequest(appUrl, `/login?user=${user}`);
  return String(res.headers['set-cookie']).split(';')[0]!;
}

const json = (body: string) => JSON.parse(body) as Record<string, any>;

describe('the reverse proxy to the application', () => {
  let app: Awaited<ReturnType<typeof startApp>>;
  let gw: TestGateway;
  before(async () => {
    app = await startApp();
    gw = await startGateway('memory', { upstream: app.url, pushRoutes: '/live/', upstreamTimeoutMs: 1000 });
  });
  after(async () => {
    await gw.close();
    await app.stop();
  });

  it('forwards what is not a subscription, bodies both ways, with X-Forwarded-* set and hop-by-hop headers dropped', async () => {
    const page = await rawRequest(gw.url, '/index.html');
    assert.equal(page.status, 404);
    assert.equal(page.body, 'app page /index.html');
    const echo = await rawRequest(gw.url, '/echo?x=1', {
      method: 'POST',
      headers: { 'content-type': 'text/plain', connection: 'keep-alive, x-client-hop', 'x-client-hop': 'drop me', 'x-kept': 'keep me' },
      body: 'hello app',
    });
    assert.equal(echo.status, 200);
    const seen = json(echo.body);
    assert.equal(seen.method, 'POST');
    assert.equal(seen.url, '/echo?x=1');
    assert.equal(seen.body, 'hello app');
    assert.equal(seen.headers['x-kept'], 'keep me');
    assert.equal(seen.headers['x-client-hop'], undefined, 'a header named in Connection is hop-by-hop');
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(seen.headers['x-forwarded-proto'], 'http');
    assert.equal(seen.headers['x-forwarded-host'], new URL(gw.url).host);
    assert.equal(echo.headers['x-app'], 'yes');
    assert.equal(echo.headers['x-app-hop'], undefined, 'hop-by-hop in the answer too');
  });

  it('replaces forged X-Forwarded-* and identity headers from an untrusted client', async () => {
    const echo = await rawRequest(gw.url, '/echo', {
      headers: {
        'x-forwarded-for': '6.6.6.6',
        'x-forwarded-host': 'evil.example',
        'x-forwarded-proto': 'https',
        'warren-consumer-id': 'admin',
        'warren-identity': 'admin',
      },
    });
    const seen = json(echo.body);
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(seen.headers['x-forwarded-host'], new URL(gw.url).host);
    assert.equal(seen.headers['x-forwarded-proto'], 'http');
    assert.equal(seen.headers['warren-consumer-id'], undefined);
    assert.equal(seen.headers['warren-identity'], undefined);
  });

  it('keeps and extends X-Forwarded-* from a trusted proxy', async () => {
    const trusting = await startGateway('memory', { upstream: app.url, pushRoutes: '/live/', trustedProxies: '127.0.0.1' });
    try {
      const echo = await rawRequest(trusting.url, '/echo', {
        headers: { 'x-forwarded-for': '203.0.113.9', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'app.example' },
      });
      const seen = json(echo.body);
      assert.equal(seen.headers['x-forwarded-for'], '203.0.113.9, 127.0.0.1');
      assert.equal(seen.headers['x-forwarded-proto'], 'https');
      assert.equal(seen.headers['x-forwarded-host'], 'app.example');
    } finally {
      await trusting.close();
    }
  });

  it('streams a large answer intact', async () => {
    const res = await rawRequest(gw.url, '/big');
    assert.equal(res.status, 200);
    assert.equal(res.body.length, 80 * 64 * 1024);
  });

  it('subscribes on push routes with GET, and forwards other methods there to the app', async () => {
    const channel = `/live/${unique('news-')}`;
    const poll = await rawRequest(gw.url, `${channel}?timeout=0`, { headers: { 'consumer-id': unique('c-') } });
    assert.equal(poll.status, 204, 'a GET on a push route is a long-poll, not proxied');
    const post = await rawRequest(gw.url, '/live/echo', { method: 'POST', body: 'to the app', headers: { 'content-type': 'text/plain' } });
    assert.equal(json(post.body).body, 'to the app');
  });

  it('answers 504 UPSTREAM_TIMEOUT when the app is slow, and 502 UPSTREAM_UNAVAILABLE when it is down', async () => {
    const slow = await rawRequest(gw.url, '/slow');
    assert.equal(slow.status, 504);
    assert.equal(json(slow.body).code, 'UPSTREAM_TIMEOUT');
    const down = await startGateway('memory', { upstream: 'http://127.0.0.1:1', pushRoutes: '/live/' });
    try {
      const res = await rawRequest(down.url, '/anything');
      assert.equal(res.status, 502);
      assert.equal(json(res.body).code, 'UPSTREAM_UNAVAILABLE');
      assert.match(String(res.headers['content-type']), /^application\/json/);
    } finally {
      await down.close();
    }
  });

  it('sends --app-routes under the push routes to the application, GETs included', async () => {
    const carved = await startGateway('memory', { upstream: app.url, pushRoutes: '/live/', appRoutes: '/live/echo' });
    try {
      const get = await rawRequest(carved.url, '/live/echo?from=app-routes');
      assert.equal(get.status, 200);
      assert.equal(json(get.body).url, '/live/echo?from=app-routes', 'proxied, not a long-poll');
      const poll = await rawRequest(carved.url, '/live/other?timeout=0', { headers: { 'consumer-id': unique('c-') } });
      assert.equal(poll.status, 204, 'the rest of the push route is still a channel');
    } finally {
      await carved.close();
    }
    assert.throws(() => normalizeOptions({ appRoutes: '/x/' }), /needs --upstream \/ WARREN_UPSTREAM \/ upstream: /);
  });

  it('refuses --upstream without --push-routes at start', () => {
    assert.throws(
      () => normalizeOptions({ upstream: 'http://app:3000' }),
      /OptionError: --upstream \/ WARREN_UPSTREAM \/ upstream needs --push-routes \/ WARREN_PUSH_ROUTES \/ pushRoutes: /,
    );
    assert.throws(() => normalizeOptions({ upstream: 'ftp://app' }), /http:\/\/ or https:\/\//);
  });
});

describe('reverse-proxied authentication (--auth-url)', () => {
  let app: Awaited<ReturnType<typeof startApp>>;
  let gw: TestGateway;
  let alice: string;
  let bob: string;
  before(async () => {
    app = await startApp();
    gw = await startGateway('memory', {
      upstream: app.url,
      pushRoutes: '/live/',
      authUrl: `${app.url}/warren/auth`,
      authCacheMs: 2000,
      upstreamTimeoutMs: 1000,
    });
    alice = await login(app.url, 'alice');
    bob = await login(app.url, 'bob');
  });
  after(async () => {
    await gw.close();
    await app.stop();
  });

  it('relays 401 to a client without a session, on long-poll, SSE and WebSocket', async () => {
    const channel = `/live/${unique('n-')}`;
    const poll = await rawRequest(gw.url, `${channel}?timeout=0`);
    assert.equal(poll.status, 401);
    assert.equal(json(poll.body).code, 'UNAUTHORIZED');
    const sse = readSse(gw.url, channel);
    assert.equal(await sse.status, 401);
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}${channel}`);
    const status = await new Promise<number>((resolve) => ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)));
    assert.equal(status, 401);
  });

  it('opens subscriptions for a logged-in client, and the identity the app vouches for owns the queue', async () => {
    const channel = `/live/${unique('n-')}`;
    // bob's queue exists and holds a message...
    assert.equal((await rawRequest(gw.url, `${channel}?timeout=0`, { headers: { cookie: bob } })).status, 204);
    await httpPublish(gw.url, channel, 'for bob and whoever listens');
    // ...alice naming "bob" as her consumer id reads her own queue alice/bob, not bob's.
    const forged = await rawRequest(gw.url, `${channel}?timeout=0`, {
      headers: { cookie: alice, 'consumer-id': 'bob', 'warren-consumer-id': 'bob' },
    });
    assert.equal(forged.status, 204, "alice cannot read bob's queue");
    const own = await rawRequest(gw.url, `${channel}?timeout=2`, { headers: { cookie: bob } });
    assert.equal(own.status, 200);
    assert.equal(own.body, 'for bob and whoever listens');
    assert.equal(own.headers['set-cookie'], undefined, 'no consumer cookie is assigned when the app vouches for the identity');
  });

  it('tells the auth endpoint the channel and the id the client asked for, under a name no app mistakes for an identity', async () => {
    await rawRequest(gw.url, `/live/${unique('hdr-')}?timeout=0`, {
      headers: { cookie: alice, 'consumer-id': 'tab-1', 'x-forwarded-for': '6.6.6.6' },
    });
    const seen = json((await rawRequest(app.url, '/stats')).body).lastAuthHeaders as Record<string, string>;
    assert.equal(seen['warren-requested-consumer-id'], 'tab-1');
    assert.equal(seen['warren-consumer-id'], undefined);
    assert.match(seen['warren-channel']!, /^\/live\/hdr-/);
    assert.equal(seen.cookie, alice);
    assert.equal(seen['x-forwarded-for'], '127.0.0.1');
  });

  it("relays 403 for a channel the app refuses (another user's private channel)", async () => {
    const poll = await rawRequest(gw.url, '/live/users/bob?timeout=0', { headers: { cookie: alice } });
    assert.equal(poll.status, 403);
    assert.equal(json(poll.body).code, 'FORBIDDEN');
    const own = await rawRequest(gw.url, '/live/users/alice?timeout=0', { headers: { cookie: alice } });
    assert.equal(own.status, 204);
    const sse = readSse(gw.url, '/live/users/bob', { cookie: alice });
    assert.equal(await sse.status, 403);
  });

  it('asks the app once per cache window for the same credentials and channel', async () => {
    const channel = `/live/${unique('cached-')}`;
    const calls = async () => json((await rawRequest(app.url, '/stats')).body).authCalls as number;
    const before = await calls();
    for (let i = 0; i < 5; i++)
      assert.equal((await rawRequest(gw.url, `${channel}?timeout=0`, { headers: { cookie: alice } })).status, 204);
    assert.equal((await calls()) - before, 1);
  });

  it('fails closed: an auth endpoint that errs, is slow, vouches for garbage or is down opens nothing', async () => {
    for (const [authUrl, status, code] of [
      [`${app.url}/warren/auth-broken`, 502, 'UPSTREAM_UNAVAILABLE'],
      [`${app.url}/warren/auth-slow`, 504, 'UPSTREAM_TIMEOUT'],
      [`${app.url}/warren/auth-bad-identity`, 502, 'UPSTREAM_UNAVAILABLE'],
      ['http://127.0.0.1:1/auth', 502, 'UPSTREAM_UNAVAILABLE'],
    ] as const) {
      const strict = await startGateway('memory', { upstream: app.url, pushRoutes: '/live/', authUrl, upstreamTimeoutMs: 500 });
      try {
        const poll = await rawRequest(strict.url, '/live/x?timeout=0', { headers: { cookie: alice } });
        assert.equal(poll.status, status, authUrl);
        assert.equal(json(poll.body).code, code);
        assert.equal(strict.gateway.stats().broker.queueDeclares, 0, 'no queue for a refused subscription');
      } finally {
        await strict.close();
      }
    }
  });

  it('refuses a WebSocket upgrade from a foreign Origin (cross-site WebSocket hijacking), allows its own', async () => {
    const channel = `/live/${unique('ws-')}`;
    const foreign = new WebSocket(`${gw.url.replace('http', 'ws')}${channel}`, {
      headers: { cookie: alice, origin: 'https://evil.example' },
    });
    const refused = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      foreign.once('open', () => reject(new Error('a foreign origin was let in')));
      foreign.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
    });
    assert.equal(refused.status, 403);
    assert.equal(json(refused.body).code, 'ORIGIN_NOT_ALLOWED');
    const own = new WebSocket(`${gw.url.replace('http', 'ws')}${channel}`, { headers: { cookie: alice, origin: gw.url } });
    await new Promise((resolve, reject) => {
      own.once('open', resolve);
      own.once('error', reject);
    });
    own.close();
  });

  it('authorizes each channel a warren.v1 socket subscribes to', async () => {
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/_warren/ws`, 'warren.v1', { headers: { cookie: alice } });
    const frames: Array<Record<string, any>> = [];
    ws.on('message', (d) => frames.push(JSON.parse(d.toString())));
    await new Promise((r) => ws.once('open', r));
    ws.send(JSON.stringify({ type: 'subscribe', channel: '/live/users/alice' }));
    ws.send(JSON.stringify({ type: 'subscribe', channel: '/live/users/bob' }));
    await until(() => frames.length >= 2, 'two answers');
    assert.deepEqual(
      frames.find((f) => f.type === 'subscribed'),
      { type: 'subscribed', channel: '/live/users/alice' },
    );
    const refused = frames.find((f) => f.type === 'error');
    assert.equal(refused?.code, 'FORBIDDEN');
    assert.equal(refused?.channel, '/live/users/bob');
    ws.close();
  });
});

describe('WebSocket messages from clients to the application', () => {
  let app: Awaited<ReturnType<typeof startApp>>;
  let gw: TestGateway;
  let alice: string;
  before(async () => {
    app = await startApp();
    gw = await startGateway('memory', {
      upstream: app.url,
      pushRoutes: '/live/',
      authUrl: `${app.url}/warren/auth`,
      upstreamTimeoutMs: 1000,
    });
    alice = await login(app.url, 'alice');
  });
  after(async () => {
    await gw.close();
    await app.stop();
  });

  async function socket(path: string, protocol?: string): Promise<{ ws: WebSocket; frames: Array<{ text: string; binary: boolean }> }> {
    const url = `${gw.url.replace('http', 'ws')}${path}`;
    const ws =
      protocol === undefined
        ? new WebSocket(url, { headers: { cookie: alice } })
        : new WebSocket(url, protocol, { headers: { cookie: alice } });
    const frames: Array<{ text: string; binary: boolean }> = [];
    ws.on('message', (d, binary) => frames.push({ text: d.toString(), binary }));
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    return { ws, frames };
  }

  it('warren.v1: a send becomes a POST to the channel path with the cookies and the vouched identity; the answer comes back as a reply with the same id', async () => {
    const { ws, frames } = await socket('/_warren/ws', 'warren.v1');
    ws.send(JSON.stringify({ type: 'send', id: 'r1', channel: '/live/echo', data: { text: 'hello' } }));
    ws.send(JSON.stringify({ type: 'send', id: 'r2', channel: '/live/empty', data: 'nothing back' }));
    await until(() => frames.length === 2, 'two replies');
    const replies = frames.map((f) => json(f.text));
    const r1 = replies.find((r) => r.id === 'r1')!;
    assert.equal(r1.type, 'reply');
    assert.equal(r1.status, 200);
    assert.equal(r1.channel, '/live/echo');
    const seen = json(r1.data);
    assert.equal(seen.method, 'POST');
    assert.equal(seen.url, '/live/echo');
    assert.equal(seen.body, '{"text":"hello"}');
    assert.equal(seen.headers['content-type'], 'application/json');
    assert.equal(seen.user, 'alice', "the client's cookie reached the app");
    assert.equal(seen.headers['warren-identity'], 'alice', 'the identity the app vouched for');
    assert.equal(seen.headers['warren-consumer-id'], 'alice', 'the queue owner (no client id was named)');
    assert.equal(seen.headers['warren-channel'], '/live/echo');
    assert.deepEqual(
      replies.find((r) => r.id === 'r2'),
      { type: 'reply', id: 'r2', channel: '/live/empty', status: 204 },
    );
    ws.close();
  });

  it("a raw socket's message goes to its channel path and the answer comes back as a frame", async () => {
    const { ws, frames } = await socket('/live/echo');
    ws.send('plain text');
    await until(() => frames.length === 1, 'an answer');
    assert.equal(frames[0]!.binary, false);
    assert.equal(json(frames[0]!.text).body, 'plain text');
    ws.close();
  });

  it('an application that is down is an error frame, never a dropped socket', async () => {
    const down = await startGateway('memory', { upstream: 'http://127.0.0.1:1', pushRoutes: '/live/', upstreamTimeoutMs: 500 });
    try {
      const ws = new WebSocket(`${down.url.replace('http', 'ws')}/_warren/ws`, 'warren.v1');
      const frames: Array<Record<string, any>> = [];
      ws.on('message', (d) => frames.push(JSON.parse(d.toString())));
      await new Promise((r) => ws.once('open', r));
      ws.send(JSON.stringify({ type: 'send', id: 'x1', channel: '/live/echo', data: 'hi' }));
      await until(() => frames.length === 1, 'an error frame');
      assert.deepEqual(
        { ...frames[0], message: undefined },
        { type: 'error', id: 'x1', code: 'UPSTREAM_UNAVAILABLE', channel: '/live/echo', message: undefined },
      );
      ws.send(JSON.stringify({ type: 'subscribe', channel: '/live/still-open' }));
      await until(() => frames.length === 2, 'the socket to answer again');
      assert.equal(frames[1]!.type, 'subscribed');
      ws.close();
    } finally {
      await down.close();
    }
  });

  it('a send to a channel the app refuses is an error frame', async () => {
    const { ws, frames } = await socket('/_warren/ws', 'warren.v1');
    ws.send(JSON.stringify({ type: 'send', id: 'f1', channel: '/live/users/bob', data: 'psst' }));
    await until(() => frames.length === 1, 'an answer');
    const frame = json(frames[0]!.text);
    assert.equal(frame.type, 'error');
    assert.equal(frame.id, 'f1');
    assert.equal(frame.code, 'FORBIDDEN');
    ws.close();
  });
});

describe("the application's own WebSockets and the client-message route", () => {
  let app: Awaited<ReturnType<typeof startApp>>;
  let gw: TestGateway;
  before(async () => {
    app = await startApp();
    gw = await startGateway('memory', {
      upstream: app.url,
      pushRoutes: '/live/',
      wsMessagePath: '/api/messages{channel}',
      wsMessageMethod: 'PUT',
    });
  });
  after(async () => {
    await gw.close();
    await app.stop();
  });

  it('tunnels a WebSocket upgrade outside the push routes to the application, with X-Forwarded-For and without forged identity headers', async () => {
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/app-ws`, { headers: { 'warren-consumer-id': 'forged' } });
    const frames: string[] = [];
    ws.on('message', (d) => frames.push(d.toString()));
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    try {
      ws.send('through the gateway');
      await until(() => frames.length === 2, 'the hello and the echo');
      assert.deepEqual(json(frames[0]!), { hello: true, forwardedFor: '127.0.0.1', identity: null });
      assert.equal(frames[1], 'echo: through the gateway');
    } finally {
      ws.close();
    }
  });

  it('answers 502 UPSTREAM_UNAVAILABLE to an upgrade when the application is down', async () => {
    const down = await startGateway('memory', { upstream: 'http://127.0.0.1:1', pushRoutes: '/live/' });
    try {
      const ws = new WebSocket(`${down.url.replace('http', 'ws')}/app-ws`);
      const status = await new Promise<number>((resolve) => ws.once('unexpected-response', (_q, res) => resolve(res.statusCode ?? 0)));
      assert.equal(status, 502);
    } finally {
      await down.close();
    }
  });

  it('sends client messages with the configured method and path', async () => {
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/_warren/ws`, 'warren.v1');
    const frames: Array<Record<string, any>> = [];
    ws.on('message', (d) => frames.push(JSON.parse(d.toString())));
    await new Promise((r) => ws.once('open', r));
    ws.send(JSON.stringify({ type: 'send', id: 'p1', channel: '/live/room', data: 'hi' }));
    await until(() => frames.length === 1, 'a reply');
    const seen = json(frames[0]!.data);
    assert.equal(seen.method, 'PUT');
    assert.equal(seen.url, '/api/messages/live/room');
    ws.close();
    assert.throws(() => normalizeOptions({ wsMessageMethod: 'DELETE' }), /POST, PUT or PATCH/);
    assert.throws(() => normalizeOptions({ wsMessagePath: 'api?x' }), /must be a path/);
  });
});
