import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { readSse, startGateway, type SseReader, type TestGateway } from '../support/index.js';
import { startTrustingApp, type TrustingApp } from '../support/trusting-app.js';

describe('the per-identity cap (--max-connections-per-identity)', () => {
  let app: TrustingApp;
  let gw: TestGateway;
  const open: SseReader[] = [];
  before(async () => {
    app = await startTrustingApp();
    gw = await startGateway('memory', {
      upstream: app.url,
      pushRoutes: '/live/',
      authUrl: `${app.url}/auth`,
      maxConnectionsPerIdentity: 2,
    });
  });
  after(async () => {
    for (const reader of open) reader.close();
    await gw.close();
    await app.close();
  });
  const stream = (path: string, headers: Record<string, string> = {}): Promise<number> => {
    const reader = readSse(gw.url, path, headers);
    open.push(reader);
    return reader.status;
  };

  it('anonymous sockets that name ?consumer_id=alice do not lock out the logged-in alice; each kind has its own count', async () => {
    // Three channels: a second stream of one consumer on one channel would take the first one over.
    assert.equal(await stream('/live/news?consumer_id=alice'), 200);
    assert.equal(await stream('/live/sport?consumer_id=alice'), 200);
    assert.equal(await stream('/live/weather?consumer_id=alice'), 429, 'unvouched ids are capped too');
    assert.equal(await stream('/live/news', { cookie: 'session=alice' }), 200, 'the real alice gets in');
    assert.equal(await stream('/live/news?consumer_id=tab2', { cookie: 'session=alice' }), 200);
    assert.equal(await stream('/live/news?consumer_id=tab3', { cookie: 'session=alice' }), 429, 'the vouched identity is capped');
  });
});
