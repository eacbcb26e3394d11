import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { rawRequest, startGateway, type TestGateway } from '../support/index.js';
import { startTrustingApp, type TrustingApp } from '../support/trusting-app.js';

const json = (body: string) => JSON.parse(body) as { headers: Record<string, string> };

describe('Forwarded and X-Real-IP', () => {
  let app: TrustingApp;
  let gw: TestGateway;
  before(async () => {
    app = await startTrustingApp();
    gw = await startGateway('memory', { upstream: app.url, pushRoutes: '/live/', upstreamTimeoutMs: 2000 });
  });
  after(async () => {
    await gw.close();
    await app.close();
  });

  it("from an untrusted client are replaced by the gateway's own", async () => {
    const host = new URL(gw.url).host;
    const res = await rawRequest(gw.url, '/page', {
      headers: { forwarded: 'for=6.6.6.6;host=evil.example;proto=https', 'x-real-ip': '6.6.6.6' },
    });
    const seen = json(res.body).headers;
    assert.equal(seen['x-real-ip'], '127.0.0.1');
    assert.equal(seen.forwarded, `for=127.0.0.1;host="${host}";proto=http`);
  });

  it("from a trusted proxy: its Forwarded is kept and the gateway's element appended; X-Real-IP is the client it names", async () => {
    const trusting = await startGateway('memory', { upstream: app.url, pushRoutes: '/live/', trustedProxies: '127.0.0.1' });
    try {
      const res = await rawRequest(trusting.url, '/page', {
        headers: {
          host: 'app.example',
          forwarded: 'for=203.0.113.9;proto=https',
          'x-forwarded-for': '203.0.113.9',
          'x-forwarded-proto': 'https',
          'x-forwarded-host': 'app.example',
          'x-real-ip': '6.6.6.6',
        },
      });
      const seen = json(res.body).headers;
      assert.equal(seen['x-real-ip'], '203.0.113.9');
      assert.equal(seen.forwarded, 'for=203.0.113.9;proto=https, for=127.0.0.1;host="app.example";proto=https');
    } finally {
      await trusting.close();
    }
  });
});
