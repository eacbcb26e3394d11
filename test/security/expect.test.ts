import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { curl, startGateway, until, type TestGateway } from '../support/index.js';
import { rawSocket } from '../support/raw-socket.js';
import { startTrustingApp, type TrustingApp } from '../support/trusting-app.js';

describe('Expect: 100-continue on proxied requests', () => {
  let app: TrustingApp;
  let gw: TestGateway;
  let dir: string;
  before(async () => {
    app = await startTrustingApp();
    gw = await startGateway('memory', { upstream: app.url, pushRoutes: '/live/', upstreamTimeoutMs: 5000 });
    dir = await mkdtemp(join(tmpdir(), 'warren-expect-'));
  });
  after(async () => {
    await gw.close();
    await app.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('curl uploading more than 1 MiB (it sends Expect: 100-continue) reaches the app', async () => {
    const file = join(dir, 'upload.bin');
    await writeFile(file, Buffer.alloc(3 * 1024 * 1024, 'u'));
    const out = await curl([
      '-o',
      '-',
      '-w',
      '\n%{http_code}',
      '-H',
      'content-type: application/octet-stream',
      '--data-binary',
      `@${file}`,
      `${gw.url}/upload`,
    ]);
    const lines = out.trimEnd().split('\n');
    assert.equal(lines.at(-1), '200', out.slice(0, 300));
    assert.equal(JSON.parse(lines.slice(0, -1).join('\n')).bodyBytes, 3 * 1024 * 1024);
  });

  it('a raw request that waits for 100 Continue before its body reaches the app', async () => {
    const client = await rawSocket(gw.url);
    client.write(
      'POST /upload HTTP/1.1\r\nHost: gw.example\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n',
    );
    await until(() => client.received().startsWith('HTTP/1.1 100 Continue\r\n\r\n'), 'the 100 Continue', 5000);
    client.write('hello');
    await client.closed;
    const final = client.received().slice('HTTP/1.1 100 Continue\r\n\r\n'.length);
    assert.match(final, /^HTTP\/1\.1 200 /, final.slice(0, 300));
    assert.match(final, /"method":"POST","url":"\/upload"/);
    assert.match(final, /"bodyBytes":5\}/);
  });
});
