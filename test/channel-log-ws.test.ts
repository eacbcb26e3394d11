// WebSocket and the browser client on logged channels (docs/channel-logs.md,
// docs/protocol.md "Frames"): a warren.v1 `subscribe` with `since` (an event
// id or a time) and `history`, the `gap`/`reset` frames, a plain socket's
// `?history=` / `?since=`, and @warren/client resuming an anonymous stream.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import amqp from 'amqplib';
import { EventSource } from 'eventsource';
import { WebSocket } from 'ws';
import { channelLogName } from '@warren/protocol';
import { WarrenClient, type TransportName, type WarrenMessage, type WarrenSignalEvent } from '@warren/client';
import { AMQP_URL, BROKERS, readSse, startGateway, unique, until, type TestGateway } from './support/index.js';
import { closeAndClean, publishAll, range } from './support/channel-logs.js';

const SHARDS = 4;
const UNKNOWN_ID = '999999999.00000000';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Frame {
  type: string;
  channel?: string;
  data?: string;
  id?: string;
  reason?: string;
}

/** A socket and the frames (or, without warren.v1, the bodies) it received. */
async function openSocket(gw: TestGateway, path: string, protocol?: string): Promise<{ ws: WebSocket; frames: Frame[] }> {
  const ws =
    protocol === undefined
      ? new WebSocket(`${gw.url.replace('http', 'ws')}${path}`)
      : new WebSocket(`${gw.url.replace('http', 'ws')}${path}`, protocol);
  const frames: Frame[] = [];
  ws.on('message', (data) =>
    frames.push(protocol === undefined ? { type: 'body', data: String(data) } : (JSON.parse(String(data)) as Frame)),
  );
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  return { ws, frames };
}

const messageData = (frames: Frame[]): string[] => frames.filter((f) => f.type === 'message' || f.type === 'body').map((f) => f.data!);

for (const kind of BROKERS) {
  describe(`logged channels over WebSocket on the ${kind} broker`, () => {
    let gw: TestGateway;
    const exchange = unique('warren-test-');

    before(async () => {
      gw = await startGateway(kind, { logRoutes: '/logged/', exchange, logShards: SHARDS });
    });
    after(() => closeAndClean(gw, exchange, kind, SHARDS));

    /** The event ids of a channel's last `n` messages, read with a warren.v1 `history`. */
    async function lastIds(channel: string, n: number): Promise<string[]> {
      const { ws, frames } = await openSocket(gw, '/_warren/ws', 'warren.v1');
      ws.send(JSON.stringify({ type: 'subscribe', channel, history: n }));
      await until(() => messageData(frames).length === n, `${n} past messages`);
      ws.close();
      return frames.filter((f) => f.type === 'message').map((f) => f.id!);
    }

    /** Subscribes a warren.v1 socket with `fields`, publishes `live` once subscribed, and returns every message's data. */
    async function subscribeThenLive(channel: string, fields: Record<string, unknown>, expected: number, live: string[]): Promise<Frame[]> {
      const { ws, frames } = await openSocket(gw, '/_warren/ws', 'warren.v1');
      ws.send(JSON.stringify({ type: 'subscribe', channel, ...fields }));
      await until(() => frames.some((f) => f.type === 'subscribed') && messageData(frames).length >= expected, 'the catch-up');
      await publishAll(gw, channel, live);
      await until(() => messageData(frames).length >= expected + live.length, 'the live ones');
      await sleep(200);
      ws.close();
      return frames;
    }

    it('subscribe with since (an event id) gets exactly what came after, then live ones', async () => {
      const channel = `/logged/${unique('since-id-')}`;
      await publishAll(gw, channel, range(0, 20));
      const ids = await lastIds(channel, 20);
      const frames = await subscribeThenLive(channel, { since: ids[4] }, 15, ['live0', 'live1']);
      assert.deepEqual(messageData(frames), [...range(5, 20), 'live0', 'live1']);
      assert.deepEqual(
        frames
          .filter((f) => f.type === 'message')
          .slice(0, 15)
          .map((f) => f.id),
        ids.slice(5),
      );
    });

    it('subscribe with since (a time, ISO or epoch ms) gets exactly what was published from then, then live ones', async () => {
      const channel = `/logged/${unique('since-time-')}`;
      await publishAll(gw, channel, range(0, 10, 'old'));
      // Times are to the second (AMQP timestamps): start in a second of its own.
      await sleep(1050 - (Date.now() % 1000));
      const since = Date.now();
      await publishAll(gw, channel, range(0, 10, 'new'));
      const lives: string[] = [];
      for (const value of [new Date(since).toISOString(), String(since)]) {
        const past = [...range(0, 10, 'new'), ...lives];
        lives.push(`live-${value}`);
        const frames = await subscribeThenLive(channel, { since: value }, past.length, [`live-${value}`]);
        assert.deepEqual(messageData(frames), [...past, `live-${value}`], value);
      }
    });

    it('an SSE stream with ?since= (a time, then an id) starts there too', async () => {
      const channel = `/logged/${unique('sse-since-')}`;
      await publishAll(gw, channel, range(0, 5, 'old'));
      await sleep(1050 - (Date.now() % 1000));
      const since = Date.now();
      await publishAll(gw, channel, range(0, 5, 'new'));
      const byTime = readSse(gw.url, `${channel}?since=${new Date(since).toISOString()}`);
      assert.equal(await byTime.status, 200);
      await until(() => byTime.events.length >= 5, 'the five since then');
      const byId = readSse(gw.url, `${channel}?since=${byTime.events[2]!.id!}`);
      assert.equal(await byId.status, 200);
      await until(() => byId.events.length >= 2, 'the two after it');
      await sleep(200);
      byTime.close();
      byId.close();
      assert.deepEqual(
        byTime.events.map((e) => e.data),
        range(0, 5, 'new'),
      );
      assert.deepEqual(
        byId.events.map((e) => e.data),
        range(3, 5, 'new'),
      );
    });

    it('subscribe with history: 50 gets the last 50, then live ones', async () => {
      const channel = `/logged/${unique('history-')}`;
      await publishAll(gw, channel, range(0, 70));
      const frames = await subscribeThenLive(channel, { history: 50 }, 50, ['live']);
      assert.deepEqual(messageData(frames), [...range(20, 70), 'live']);
    });

    it('an id the log does not know gets a reset frame, then live messages', async () => {
      const channel = `/logged/${unique('unknown-')}`;
      await publishAll(gw, channel, range(0, 3));
      const frames = await subscribeThenLive(channel, { since: UNKNOWN_ID }, 0, ['after']);
      const reset = frames.find((f) => f.type === 'reset');
      assert.ok(reset !== undefined, JSON.stringify(frames));
      assert.equal(reset.channel, channel);
      assert.equal(reset.reason, 'unknown-position');
      assert.match(reset.id!, /^\d+\.[0-9a-f]{8}$/);
      assert.ok(!frames.some((f) => f.type === 'message' && f.data!.startsWith('{')), 'no signal as a message frame');
      assert.deepEqual(messageData(frames), ['after']);
    });

    it('refuses a bad since or history with an error frame', async () => {
      const { ws, frames } = await openSocket(gw, '/_warren/ws', 'warren.v1');
      const channel = `/logged/${unique('bad-')}`;
      ws.send(JSON.stringify({ type: 'subscribe', channel, history: 1001 }));
      ws.send(JSON.stringify({ type: 'subscribe', channel, since: '2026-13-45T99:00:00Z' }));
      await until(() => frames.length >= 2, 'two answers');
      ws.close();
      assert.deepEqual(
        frames.map((f) => [f.type, (f as { code?: string }).code]),
        [
          ['error', 'INVALID_REQUEST'],
          ['error', 'INVALID_REQUEST'],
        ],
      );
    });

    it('a plain socket on a logged channel path starts from ?history= or ?since=', async () => {
      const channel = `/logged/${unique('plain-')}`;
      await publishAll(gw, channel, range(0, 10));
      const ids = await lastIds(channel, 10);
      for (const [query, expected] of [
        ['history=3', range(7, 10)],
        [`since=${ids[7]}`, range(8, 10)],
      ] as const) {
        const before = gw.gateway.stats().logs.subscribed;
        const { ws, frames } = await openSocket(gw, `${channel}?${query}`);
        await until(() => gw.gateway.stats().logs.subscribed > before && frames.length >= expected.length, query);
        await sleep(100);
        ws.close();
        assert.deepEqual(messageData(frames), expected, query);
      }
      const bad = new WebSocket(`${gw.url.replace('http', 'ws')}${channel}?since=2026-99-99`);
      const status = await new Promise<number>((resolve) => bad.once('unexpected-response', (_req, res) => resolve(res.statusCode!)));
      assert.equal(status, 400);
    });

    it('the client (anonymous, WebSocket) reconnects after its socket is killed and gets exactly the 200 published meanwhile', async () => {
      const channel = `/logged/${unique('client-')}`;
      const sockets: WebSocket[] = [];
      class Tracked extends WebSocket {
        constructor(url: string, protocols?: string | string[]) {
          super(url, protocols);
          sockets.push(this);
        }
      }
      const client = new WarrenClient({
        url: gw.url,
        transports: ['websocket'],
        WebSocket: Tracked,
        consumerId: null,
        reconnect: { minMs: 50, maxMs: 200 },
      });
      const got: WarrenMessage[] = [];
      try {
        const before = gw.gateway.stats().logs.subscribed;
        client.subscribe(channel, (m) => got.push(m));
        await until(() => gw.gateway.stats().logs.subscribed > before, 'the stream to subscribe');
        await publishAll(gw, channel, range(0, 10, 'before'));
        await until(() => got.length === 10, 'the first 10');
        sockets.at(-1)!.terminate();
        await publishAll(gw, channel, range(0, 200));
        await until(() => got.length >= 210, 'the 200 published while it was away', 30_000);
        await sleep(300);
        assert.equal(sockets.length >= 2, true, 'it reconnected');
        assert.equal(client.consumerId, undefined);
        assert.deepEqual(
          got.map((m) => m.data),
          [...range(0, 10, 'before'), ...range(0, 200)],
        );
      } finally {
        client.close();
      }
    });

    it('an id older than what the log retains gets a gap frame (and the client onGap), then everything retained', async () => {
      const small = unique('warren-test-');
      // One shard, 64 KiB retained: 200 messages of 1 KiB push the first one out.
      const gw2 = await startGateway(kind, { logRoutes: '/logged/', exchange: small, logShards: 1, logMaxBytes: 64 * 1024 });
      try {
        const channel = `/logged/${unique('gone-')}`;
        await publishAll(gw2, channel, ['first']);
        const probe = await openSocket(gw2, '/_warren/ws', 'warren.v1');
        probe.ws.send(JSON.stringify({ type: 'subscribe', channel, history: 1 }));
        await until(() => messageData(probe.frames).length === 1, 'the first message');
        probe.ws.close();
        const firstId = probe.frames.find((f) => f.type === 'message')!.id!;
        await publishAll(gw2, channel, range(0, 200, 'x'.repeat(1024)));
        const { ws, frames } = await openSocket(gw2, '/_warren/ws', 'warren.v1');
        ws.send(JSON.stringify({ type: 'subscribe', channel, since: firstId }));
        await until(() => messageData(frames).at(-1)?.endsWith('199') === true, 'the retained messages', 30_000);
        ws.close();
        const gap = frames.find((f) => f.type === 'gap');
        assert.deepEqual(gap, { type: 'gap', channel, id: firstId, reason: 'history-gone' });
        const got = messageData(frames).map((d) => Number(d.slice(1024)));
        assert.ok(got.length < 200 && got.length > 0, `some history is gone (${got.length} retained)`);
        assert.deepEqual(got, range(got[0]!, 200, '').map(Number));
        const client = new WarrenClient({ url: gw2.url, transports: ['websocket'], WebSocket, consumerId: null });
        try {
          const gaps: WarrenSignalEvent[] = [];
          const received: string[] = [];
          client.subscribe(channel, (m) => received.push(m.data), { lastEventId: firstId, onGap: (e) => gaps.push(e) });
          await until(() => received.at(-1)?.endsWith('199') === true, 'the client to catch up', 30_000);
          assert.deepEqual(gaps, [{ channel, id: firstId, reason: 'history-gone', transport: 'websocket' }]);
          assert.equal(received.length, got.length);
        } finally {
          client.close();
        }
      } finally {
        await gw2.gateway.broker.deleteLog(channelLogName(0, small));
        await gw2.close();
        if (kind === 'rabbitmq') {
          const conn = await amqp.connect(AMQP_URL);
          await (await conn.createChannel()).deleteExchange(small);
          await conn.close();
        }
      }
    });

    for (const transport of ['websocket', 'sse'] as TransportName[]) {
      it(`the client surfaces a reset over ${transport} (onReset, the reset event) and goes on live`, async () => {
        const channel = `/logged/${unique('client-reset-')}`;
        await publishAll(gw, channel, ['old']);
        const client = new WarrenClient({ url: gw.url, transports: [transport], WebSocket, EventSource, consumerId: null });
        const resets: WarrenSignalEvent[] = [];
        const events: WarrenSignalEvent[] = [];
        const got: string[] = [];
        try {
          client.on('reset', (e) => events.push(e));
          const sub = client.subscribe(channel, (m) => got.push(m.data), { lastEventId: UNKNOWN_ID, onReset: (e) => resets.push(e) });
          await until(() => resets.length === 1, 'the reset');
          await publishAll(gw, channel, ['after']);
          await until(() => got.length === 1, 'a live message');
          assert.deepEqual(got, ['after']);
          assert.deepEqual(events, resets);
          assert.equal(resets[0]!.reason, 'unknown-position');
          assert.equal(resets[0]!.transport, transport);
          assert.match(resets[0]!.id, /^\d+\.[0-9a-f]{8}$/);
          assert.notEqual(sub.lastEventId, UNKNOWN_ID);
        } finally {
          client.close();
        }
      });
    }
  });
}
