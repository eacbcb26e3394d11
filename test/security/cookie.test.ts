import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { rawRequest, startGateway, unique, type TestGateway } from '../support/index.js';

describe('the consumer-id cookie behind a TLS-terminating proxy', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway('memory', { trustedProxies: '127.0.0.0/8' });
  });
  after(() => gw.close());

  it('is Secure when a trusted proxy says the client came over https, and not otherwise', async () => {
    const secure = await rawRequest(gw.url, `/${unique('c-')}?timeout=0`, { headers: { 'x-forwarded-proto': 'https' } });
    assert.match(String(secure.headers['set-cookie']), /^warren_consumer_id=c_[^;]+;.*; Secure$/);
    const plain = await rawRequest(gw.url, `/${unique('c-')}?timeout=0`);
    assert.doesNotMatch(String(plain.headers['set-cookie']), /Secure/);
    const untrusted = await startGateway('memory');
    try {
      const claimed = await rawRequest(untrusted.url, `/${unique('c-')}?timeout=0`, { headers: { 'x-forwarded-proto': 'https' } });
      assert.doesNotMatch(String(claimed.headers['set-cookie']), /Secure/, 'only a trusted proxy is believed');
    } finally {
      await untrusted.close();
    }
  });
});
