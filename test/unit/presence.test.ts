// Presence (packages/gateway/src/presence/): the view over processes, the
// announcements' wire form, and the grace period on the embedded broker.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { silentLogger } from '@warren/gateway';
import { MemoryBroker } from '#gateway/broker/memory.js';
import { decodeAnnouncement, encodeAnnouncement, type Announcement } from '#gateway/presence/announcement.js';
import { Presence } from '#gateway/presence/presence.js';
import { PresenceView, type ChangeCause, type PresenceChange } from '#gateway/presence/view.js';

function recorder(): { view: PresenceView; log: string[] } {
  const log: string[] = [];
  const view = new PresenceView((c: PresenceChange, cause: ChangeCause) => log.push(`${c.type}:${c.identity}:${cause}`));
  return { view, log };
}

describe('PresenceView', () => {
  it('joins once per identity over processes, and leaves when the last process lets go', () => {
    const { view, log } = recorder();
    view.set('a', '/r', 'ann', { connections: 1, since: 10 }, 'local');
    view.set('b', '/r', 'ann', { connections: 2, since: 5 }, 'remote');
    view.set('a', '/r', 'ann', { connections: 3, since: 10 }, 'local');
    assert.deepEqual(log, ['join:ann:local']);
    assert.deepEqual(view.members('/r'), [{ identity: 'ann', connections: 5, since: 5 }]);
    view.set('a', '/r', 'ann', undefined, 'local');
    assert.deepEqual(log, ['join:ann:local']);
    view.remove('b', 'silence');
    assert.deepEqual(log, ['join:ann:local', 'leave:ann:silence']);
    assert.deepEqual(view.members('/r'), []);
    assert.deepEqual(view.size(), { channels: 0, members: 0 });
  });

  it('replaces a process state with only what differs', () => {
    const { view, log } = recorder();
    view.set('b', '/r', 'ann', { connections: 1, since: 1 }, 'remote');
    view.set('b', '/r', 'bob', { connections: 1, since: 1 }, 'remote');
    log.length = 0;
    view.replace(
      'b',
      new Map([
        [
          '/r',
          new Map([
            ['bob', { connections: 4, since: 1 }],
            ['cyd', { connections: 1, since: 2 }],
          ]),
        ],
      ]),
      'remote',
    );
    assert.deepEqual(log, ['leave:ann:remote', 'join:cyd:remote']);
    assert.deepEqual(
      view.members('/r').map((m) => `${m.identity}:${m.connections}`),
      ['bob:4', 'cyd:1'],
    );
  });
});

describe('presence announcements', () => {
  it('read back what they write, and nothing malformed', () => {
    const all: Announcement[] = [
      { t: 'beat', p: 'ab12', seq: 3, every: 500 },
      {
        t: 'delta',
        p: 'ab12',
        seq: 4,
        every: 500,
        m: [
          ['/r', 'ann', 1, 1764680000000],
          ['/r', 'bob'],
        ],
      },
      { t: 'full', p: 'ab12', seq: 4, every: 500, part: 0, last: true, m: [['/r', 'ann', 0, 1]] },
      { t: 'ask', p: 'ab12' },
      { t: 'ask', p: 'ab12', to: 'cd34' },
      { t: 'bye', p: 'ab12', grace: 5000 },
    ];
    for (const a of all) assert.deepEqual(decodeAnnouncement(encodeAnnouncement(a).body), a);
    const bad = [
      'not json',
      '[]',
      JSON.stringify({ t: 'beat', p: 'ab12', seq: 3, every: 500 }),
      JSON.stringify({ v: 2, t: 'beat', p: 'ab12', seq: 3, every: 500 }),
      JSON.stringify({ v: 1, t: 'beat', p: 'XYZ!', seq: 3, every: 500 }),
      JSON.stringify({ v: 1, t: 'beat', p: 'ab12', seq: -1, every: 500 }),
      JSON.stringify({ v: 1, t: 'delta', p: 'ab12', seq: 1, every: 500, m: [['/_x', 'ann', 1, 1]] }),
      JSON.stringify({ v: 1, t: 'delta', p: 'ab12', seq: 1, every: 500, m: [['/r', 'a n', 1, 1]] }),
      JSON.stringify({ v: 1, t: 'delta', p: 'ab12', seq: 1, every: 500, m: [['/r', 'ann', 1]] }),
      JSON.stringify({ v: 1, t: 'full', p: 'ab12', seq: 1, every: 500, part: 0, m: [] }),
      JSON.stringify({ v: 1, t: 'other', p: 'ab12' }),
    ];
    for (const text of bad) assert.equal(decodeAnnouncement(Buffer.from(text)), undefined, text);
  });
});

describe('Presence on the embedded broker', () => {
  it('keeps a member through a reconnect within the grace period, and lets it leave after', async () => {
    const broker = new MemoryBroker();
    await broker.start();
    const presence = new Presence(broker, silentLogger, {
      routes: ['/rooms/'],
      intervalMs: 100,
      graceMs: 150,
      webhook: undefined,
      webhookToken: undefined,
      webhookTimeoutMs: 1000,
    });
    presence.start();
    const seen: string[] = [];
    presence.watch('/rooms/a', (c) => seen.push(`${c.type}:${c.identity}`));
    assert.equal(presence.isPresenceChannel('/rooms/a'), true);
    assert.equal(presence.isPresenceChannel('/news/a'), false);
    const first = presence.enter('/rooms/a', 'ann');
    first.leave();
    first.leave(); // idempotent
    assert.deepEqual(
      presence.members('/rooms/a').map((m) => `${m.identity}:${m.connections}`),
      ['ann:0'],
    );
    await new Promise((r) => setTimeout(r, 50));
    const second = presence.enter('/rooms/a', 'ann');
    await new Promise((r) => setTimeout(r, 250));
    assert.deepEqual(seen, ['join:ann']);
    second.leave();
    await new Promise((r) => setTimeout(r, 250));
    assert.deepEqual(seen, ['join:ann', 'leave:ann']);
    assert.deepEqual(presence.members('/rooms/a'), []);
    await presence.close();
    await broker.close();
  });
});
