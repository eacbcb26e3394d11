import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { rawRequest, startGateway, until, type TestGateway } from '../support/index.js';
import { rawSocket } from '../support/raw-socket.js';
import { startTrustingApp, type TrustingApp } from '../support/trusting-app.js';

/** CGI and WSGI read `Warren_Identity` and `Warren-Identity` alike, as `HTTP_WARREN_IDENTITY`. */
const FORGED = {
  Warren_Identity: 'alice',
  Warren_Consumer_Id: 'alice',
  X_Forwarded_For: '6.6.6.6',
  X_Real_IP: '6.6.6.6',
  Warren_Channel: '/live/admin',
};
const underscored = (headers: Record<string, unknown>): string[] => Object.keys(headers).filter((name) => name.includes('_'));

describe('headers with underscores (identity spoofing through CGI-style name folding)', () => {
  let app: TrustingApp;
  let gw: TestGateway;
  before(async () => {
    app = await startTrustingApp({ switching: true });
    gw = await startGateway('memory', {
      upstream: app.url,
      pushRoutes: '/live/',
      authUrl: `${app.url}/auth`,
      authCacheMs: 0,
      upstreamTimeoutMs: 2000,
    });
  });
  after(async () => {
    await gw.close();
    await app.close();
  });

  it('never reach the app: not on proxied requests, not on the auth request, not on tunnelled upgrades', async () => {
    const proxied = await rawRequest(gw.url, '/page', { headers: FORGED });
    assert.equal(proxied.status, 200);
    const poll = await rawRequest(gw.url, '/live/news?timeout=0', { headers: { ...FORGED, cookie: 'session=bob' } });
    assert.equal(poll.status, 204);
    const client = await rawSocket(gw.url);
    client.write(
      `GET /socket HTTP/1.1\r\nHost: gw.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n${Object.entries(FORGED)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('')}\r\n`,
    );
    await until(() => app.upgrades.length === 1, 'the tunnelled upgrade', 5000);
    client.destroy();
    const page = app.requests.find((r) => r.url === '/page')!;
    const auth = app.requests.find((r) => r.url.startsWith('/auth'))!;
    assert.deepEqual(underscored(page.headers), [], 'proxied request');
    assert.deepEqual(underscored(auth.headers), [], 'auth request');
    assert.deepEqual(underscored(app.upgrades[0]!.headers), [], 'tunnelled upgrade');
  });
});
