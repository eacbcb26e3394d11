import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { normalizeOptions, OptionError } from '@warren/gateway';
import { rawRequest, readSse, startGateway, type SseReader, type TestGateway } from '../support/index.js';
import { startTrustingApp, type TrustingApp } from '../support/trusting-app.js';

/** Opens an SSE stream that claims `xff`, and returns it once the gateway answered. */
async function stream(gw: TestGateway, xff: string, open: SseReader[]): Promise<number> {
  const reader = readSse(gw.url, '/news', { 'x-forwarded-for': xff });
  open.push(reader);
  return reader.status;
}

describe('the client address behind a trusted proxy', () => {
  const open: SseReader[] = [];
  after(() => {
    for (const reader of open) reader.close();
  });

  it('the per-address cap counts the right-most address the proxy saw, not the hop the client wrote', async () => {
    // nginx's $proxy_add_x_forwarded_for appends the peer to whatever the client sent.
    const gw = await startGateway('memory', { trustedProxies: '127.0.0.1', maxConnectionsPerIp: 1 });
    try {
      assert.equal(await stream(gw, '1.0.0.1, 203.0.113.5', open), 200);
      assert.equal(await stream(gw, '1.0.0.2, 203.0.113.5', open), 429, 'a forged first hop is not a new client');
      assert.equal(await stream(gw, '203.0.113.6', open), 200, 'another client has its own count');
    } finally {
      for (const reader of open.splice(0)) reader.close();
      await gw.close();
    }
  });

  it('--trusted-proxies takes CIDR ranges (IPv4 and IPv6), and skips every trusted hop from the right', async () => {
    const gw = await startGateway('memory', { trustedProxies: '10.0.0.0/8, 127.0.0.0/8, ::1/128', maxConnectionsPerIp: 1 });
    try {
      assert.equal(await stream(gw, '203.0.113.5, 10.1.1.1', open), 200);
      assert.equal(await stream(gw, '203.0.113.6, 10.2.2.2, 10.3.3.3', open), 200, 'another client behind two proxies');
      assert.equal(await stream(gw, '6.6.6.6, 203.0.113.5, 10.9.9.9', open), 429, 'the same client through another proxy');
    } finally {
      for (const reader of open.splice(0)) reader.close();
      await gw.close();
    }
    assert.throws(() => normalizeOptions({ trustedProxies: '10.0.0.0/33' }), OptionError);
    assert.throws(() => normalizeOptions({ trustedProxies: 'proxy.internal' }), OptionError);
    assert.doesNotThrow(() => normalizeOptions({ trustedProxies: '::1/128, fd00::/8, 192.168.1.10' }));
  });
});

describe('the client address the app is told', () => {
  let app: TrustingApp;
  let gw: TestGateway;
  before(async () => {
    app = await startTrustingApp();
    // Dual stack: an IPv4 client's address comes in as ::ffff:127.0.0.1.
    gw = await startGateway('memory', { host: '::', upstream: app.url, pushRoutes: '/live/' });
  });
  after(async () => {
    await gw.close();
    await app.close();
  });

  it('is written as the client used it: an IPv4 client as IPv4', async () => {
    const res = await rawRequest(gw.url, '/page');
    const seen = (JSON.parse(res.body) as { headers: Record<string, string> }).headers;
    assert.equal(seen['x-forwarded-for'], '127.0.0.1');
    assert.equal(seen['x-real-ip'], '127.0.0.1');
    assert.match(seen.forwarded!, /^for=127\.0\.0\.1;/);
  });
});
