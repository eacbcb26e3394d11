// `warren listen --since`: each long-poll carries `since=` (docs/channel-logs.md):
// the flag's value first, then the id of each message received. The gateway
// side of long-poll `?since=` is built apart; this checks the requests.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { warren } from './support/index.js';

describe('warren listen --since', () => {
  it('sends since= on every poll: the given position, then the id of the last message received', async () => {
    const seen: URL[] = [];
    const answers = [
      { id: '41.0badc0de', body: 'one' },
      { id: '57.1234abcd', body: 'two' },
    ];
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      seen.push(new URL(req.url!, 'http://x'));
      const next = answers.shift();
      if (next === undefined) {
        res.writeHead(204).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'message-id': next.id }).end(next.body);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const out = await warren([
        'listen',
        '/logged/news',
        '--url',
        url,
        '--since',
        '2026-12-02T14:00:00Z',
        '--count',
        '2',
        '--timeout',
        '1',
      ]);
      assert.equal(out.code, 0, out.stderr);
      assert.equal(out.stdout, 'one\ntwo\n');
      assert.deepEqual(
        seen.map((u) => [u.pathname, u.searchParams.get('since')]),
        [
          ['/logged/news', '2026-12-02T14:00:00Z'],
          ['/logged/news', '41.0badc0de'],
        ],
      );
    } finally {
      server.close();
    }
  });

  it('refuses a --since that starts with a date and does not parse', async () => {
    const out = await warren(['listen', '/logged/news', '--url', 'http://127.0.0.1:9', '--since', '2026-99-99']);
    assert.equal(out.code, 1);
    assert.match(out.stderr, /^warren: since "2026-99-99" is not a valid ISO 8601 time/);
  });
});
