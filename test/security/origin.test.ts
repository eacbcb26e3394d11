import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { startGateway, type TestGateway } from '../support/index.js';
import { startTrustingApp, type TrustingApp } from '../support/trusting-app.js';

/** Opens a `warren.v1` WebSocket with `headers`: 101 when it opened, else the HTTP status and error code. */
function open(gw: TestGateway, headers: Record<string, string>): Promise<{ status: number; code?: string }> {
  const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/_warren/ws`, 'warren.v1', { headers });
  return new Promise((resolve, reject) => {
    ws.once('open', () => {
      ws.close();
      resolve({ status: 101 });
    });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, code: (JSON.parse(body) as { code: string }).code }));
    });
    ws.once('error', reject);
  });
}

describe('the WebSocket origin check behind a reverse proxy', () => {
  let app: TrustingApp;
  const gateways: TestGateway[] = [];
  before(async () => {
    app = await startTrustingApp();
  });
  after(async () => {
    await Promise.all(gateways.map((gw) => gw.close()));
    await app.close();
  });
  const start = async (extra: Record<string, string>): Promise<TestGateway> => {
    const gw = await startGateway('memory', { upstream: app.url, pushRoutes: '/live/', authUrl: `${app.url}/auth`, ...extra });
    gateways.push(gw);
    return gw;
  };
  // nginx: proxy_set_header Host $host (no port); X-Forwarded-Host $http_host; X-Forwarded-Proto $scheme.
  const proxied = {
    cookie: 'session=alice',
    host: 'app.example',
    origin: 'https://app.example:8443',
    'x-forwarded-host': 'app.example:8443',
    'x-forwarded-proto': 'https',
  };

  it('a same-origin page behind a trusted proxy on a non-default port opens its WebSocket, with --auth-url and with --cors-origins', async () => {
    assert.deepEqual(await open(await start({ trustedProxies: '127.0.0.1' }), proxied), { status: 101 });
    assert.deepEqual(await open(await start({ trustedProxies: '127.0.0.0/8', corsOrigins: 'https://other.example' }), proxied), {
      status: 101,
    });
  });

  it('the forwarded origin counts only from a trusted proxy, and only with the scheme it names', async () => {
    assert.deepEqual(await open(await start({}), proxied), { status: 403, code: 'ORIGIN_NOT_ALLOWED' }, 'not from a trusted proxy');
    const trusting = await start({ trustedProxies: '127.0.0.1' });
    assert.deepEqual(
      await open(trusting, { ...proxied, origin: 'http://app.example:8443' }),
      { status: 403, code: 'ORIGIN_NOT_ALLOWED' },
      'another scheme',
    );
    assert.deepEqual(await open(trusting, { ...proxied, origin: 'https://evil.example' }), { status: 403, code: 'ORIGIN_NOT_ALLOWED' });
  });
});

describe('--cors-origins "*" and WebSockets (cross-site WebSocket hijacking)', () => {
  let app: TrustingApp;
  const gateways: TestGateway[] = [];
  before(async () => {
    app = await startTrustingApp();
  });
  after(async () => {
    await Promise.all(gateways.map((gw) => gw.close()));
    await app.close();
  });
  const start = async (extra: Record<string, string>): Promise<TestGateway> => {
    const gw = await startGateway('memory', { upstream: app.url, pushRoutes: '/live/', ...extra });
    gateways.push(gw);
    return gw;
  };

  it('"*" does not let a foreign page open a WebSocket with the victim\'s cookie; explicit origins and the own origin still can', async () => {
    const any = await start({ authUrl: `${app.url}/auth`, corsOrigins: '*' });
    assert.deepEqual(await open(any, { cookie: 'session=alice', origin: 'https://evil.example' }), {
      status: 403,
      code: 'ORIGIN_NOT_ALLOWED',
    });
    assert.deepEqual(await open(any, { cookie: 'session=alice', origin: any.url }), { status: 101 }, 'its own origin');
    assert.deepEqual(await open(any, { cookie: 'session=alice' }), { status: 101 }, 'no Origin: not a browser');
    const listed = await start({ authUrl: `${app.url}/auth`, corsOrigins: '*, https://good.example' });
    assert.deepEqual(await open(listed, { cookie: 'session=alice', origin: 'https://good.example' }), { status: 101 });
    assert.deepEqual(await open(listed, { cookie: 'session=alice', origin: 'https://evil.example' }), {
      status: 403,
      code: 'ORIGIN_NOT_ALLOWED',
    });
    // Without --auth-url the consumer-id cookie is the credential: "*" does not cover it either.
    const anonymous = await start({ corsOrigins: '*' });
    assert.deepEqual(await open(anonymous, { cookie: 'warren_consumer_id=victim-0123456789', origin: 'https://evil.example' }), {
      status: 403,
      code: 'ORIGIN_NOT_ALLOWED',
    });
  });
});
