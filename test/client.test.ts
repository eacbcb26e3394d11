import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EventSource } from 'eventsource';
import { WebSocket } from 'ws';
import {
  CONSUMER_ID_STORAGE_KEY,
  WarrenClient,
  WarrenClientError,
  type StorageLike,
  type TransportName,
  type WarrenClientEventMap,
  type WarrenClientOptions,
  type WarrenMessage,
} from '@warren/client';
import { RECEIPT_MS } from '#gateway/sources/queue-subscription.js';
import { httpPublish, poll, ROOT, startGateway, unique, until, type TestGateway } from './support/index.js';

const TRANSPORTS: TransportName[] = ['websocket', 'sse', 'long-poll'];
const CLIENT_DIST = join(ROOT, 'packages', 'client', 'dist');
const FAST = { minMs: 20, maxMs: 200 };

/** Every event the client emitted, in order. */
type Recorded = { [K in keyof WarrenClientEventMap]: { type: K; event: WarrenClientEventMap[K] } }[keyof WarrenClientEventMap];

function record(client: WarrenClient): Recorded[] {
  const events: Recorded[] = [];
  client.on('open', (event) => events.push({ type: 'open', event }));
  client.on('message', (event) => events.push({ type: 'message', event }));
  client.on('error', (event) => events.push({ type: 'error', event }));
  client.on('close', (event) => events.push({ type: 'close', event }));
  return events;
}

const ofType = <K extends keyof WarrenClientEventMap>(events: Recorded[], type: K): Array<WarrenClientEventMap[K]> =>
  events.filter((e) => e.type === type).map((e) => e.event as WarrenClientEventMap[K]);

function makeClient(gw: { url: string }, transports: TransportName[], extra: WarrenClientOptions = {}): WarrenClient {
  return new WarrenClient({ url: gw.url, transports, WebSocket, EventSource, fetch, reconnect: FAST, storage: null, ...extra });
}

/** Waits until the client is open and the gateway streams every subscribed channel (`n` streams). */
async function ready(gw: TestGateway, client: WarrenClient, transport: TransportName, n: number): Promise<void> {
  await until(() => client.transport === transport, `the client to open ${transport}`);
  await until(() => {
    const s = gw.gateway.stats();
    return transport === 'long-poll' ? s.longPoll.active >= n : s.streams.identified >= n;
  }, `${n} ${transport} stream(s) on the gateway`);
}

/** The gateway holds no stream or poll any more. */
async function drained(gw: TestGateway): Promise<void> {
  await until(
    () => {
      const s = gw.gateway.stats();
      return s.streams.sse === 0 && s.streams.websocket === 0 && s.streams.identified === 0 && s.longPoll.active === 0;
    },
    `no streams left: ${JSON.stringify(gw.gateway.stats().streams)}, polls ${gw.gateway.stats().longPoll.active}`,
  );
}

const portOf = (gw: TestGateway): number => Number(new URL(gw.url).port);

/** Stops a gateway; its keep-alive connections go with it. */
async function stop(gw: TestGateway): Promise<void> {
  await gw.close();
}

/** A `ws` WebSocket that records the frames the client sends. */
function recordingWebSocket(sent: Array<Record<string, unknown>>): typeof WebSocket {
  return class extends WebSocket {
    override send(data: any, ...rest: any[]): void {
      sent.push(JSON.parse(String(data)));
      (super.send as (...a: any[]) => void)(data, ...rest);
    }
  };
}

/** An `eventsource` EventSource that records the URLs the client opens (and may rewrite them). */
function recordingEventSource(urls: string[], rewrite: (url: string) => string = (u) => u): typeof EventSource {
  return class extends EventSource {
    constructor(url: string | URL) {
      urls.push(String(url));
      super(rewrite(String(url)));
    }
  };
}

describe('WarrenClient on the embedded broker', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway('memory');
  });
  after(() => gw.close());

  for (const transport of TRANSPORTS) {
    it(`delivers over ${transport} alone: several channels, text, JSON, binary, event names, in order`, async () => {
      const a = `/${unique('deliver-a-')}`;
      const b = `/${unique('deliver-b-')}`;
      const client = makeClient(gw, [transport]);
      const events = record(client);
      const gotA: WarrenMessage[] = [];
      const gotB: WarrenMessage[] = [];
      try {
        client.subscribe(a, (m) => gotA.push(m), { events: ['greet'] });
        client.subscribe(b, (m) => gotB.push(m));
        await ready(gw, client, transport, 2);
        await httpPublish(gw.url, a, 'hello\nworld', { 'message-id': 'd-1', 'warren-event': 'greet' });
        await httpPublish(gw.url, a, '{"n":1}', { 'message-id': 'd-2', 'content-type': 'application/json' });
        await httpPublish(gw.url, a, '\u0000\u0001\u0002', { 'message-id': 'd-3', 'content-type': 'application/octet-stream' });
        await httpPublish(gw.url, b, 'to b', { 'message-id': 'd-4' });
        await until(() => gotA.length === 3 && gotB.length === 1, 'four messages');
      } finally {
        client.close();
      }
      const sse = transport === 'sse';
      const bytes = new Uint8Array([0, 1, 2]);
      assert.deepEqual(gotA, [
        { channel: a, id: 'd-1', event: 'greet', data: 'hello\nworld', transport, ...(sse ? {} : { contentType: 'text/plain' }) },
        { channel: a, id: 'd-2', data: '{"n":1}', transport, ...(sse ? {} : { contentType: 'application/json' }) },
        // SSE carries no content type: a binary body arrives as unmarked base64.
        { channel: a, id: 'd-3', data: 'AAEC', transport, ...(sse ? {} : { contentType: 'application/octet-stream', binary: bytes }) },
      ]);
      assert.deepEqual(
        gotB.map((m) => [m.channel, m.id, m.data]),
        [[b, 'd-4', 'to b']],
      );
      // The client-wide `message` event saw the same four, and there was one open, then one close.
      assert.deepEqual(
        ofType(events, 'message')
          .map((m) => m.id)
          .sort(),
        ['d-1', 'd-2', 'd-3', 'd-4'],
      );
      assert.deepEqual(ofType(events, 'open'), [{ transport }]);
      assert.deepEqual(ofType(events, 'close'), [{ transport, reconnect: false }]);
      assert.deepEqual(ofType(events, 'error'), []);
      await drained(gw);
    });
  }

  it('over SSE, receives the named events a subscription lists; with a list, other names are dropped on every transport', async () => {
    for (const transport of TRANSPORTS) {
      const channel = `/${unique('names-')}`;
      const client = makeClient(gw, [transport]);
      const got: string[] = [];
      try {
        client.subscribe(channel, (m) => got.push(`${m.event ?? '-'}:${m.data}`), { events: ['a', 'b'] });
        await ready(gw, client, transport, 1);
        await httpPublish(gw.url, channel, '1', { 'warren-event': 'a' });
        await httpPublish(gw.url, channel, '2', { 'warren-event': 'other' });
        await httpPublish(gw.url, channel, '3', { 'warren-event': 'b' });
        await httpPublish(gw.url, channel, '4');
        await until(() => got.length === 3, `three messages over ${transport}`);
      } finally {
        client.close();
      }
      assert.deepEqual(got, ['a:1', 'b:3', '-:4'], transport);
    }
    await drained(gw);
  });

  describe('falls back to the next transport', () => {
    it('when the WebSocket constructor throws: SSE', async () => {
      const channel = `/${unique('fb-throw-')}`;
      const Throwing = class {
        constructor() {
          throw new Error('WebSockets are blocked here');
        }
      } as unknown as WarrenClientOptions['WebSocket'];
      const client = makeClient(gw, ['websocket', 'sse', 'long-poll'], { WebSocket: Throwing });
      const events = record(client);
      const got: WarrenMessage[] = [];
      try {
        client.subscribe(channel, (m) => got.push(m));
        await ready(gw, client, 'sse', 1);
        await httpPublish(gw.url, channel, 'via sse');
        await until(() => got.length === 1, 'a message');
      } finally {
        client.close();
      }
      assert.equal(got[0]!.transport, 'sse');
      const errors = ofType(events, 'error');
      assert.equal(errors.length, 1);
      assert.ok(errors[0] instanceof WarrenClientError);
      assert.equal(errors[0]!.code, 'TRANSPORT_UNAVAILABLE');
      assert.equal(errors[0]!.transport, 'websocket');
      assert.match(errors[0]!.message, /blocked/);
      await drained(gw);
    });

    it('when the gateway refuses the WebSocket upgrade: SSE', async () => {
      const channel = `/${unique('fb-refused-')}`;
      // A proxy that refuses upgrades, played by a path the gateway answers 404 to.
      const Refused = class extends WebSocket {
        constructor(url: string, protocols?: string | string[]) {
          super(url.replace('/_warren/ws', '/_warren/no-such-socket'), protocols);
        }
      };
      const client = makeClient(gw, ['websocket', 'sse'], { WebSocket: Refused });
      const events = record(client);
      const got: WarrenMessage[] = [];
      try {
        client.subscribe(channel, (m) => got.push(m));
        await ready(gw, client, 'sse', 1);
        await httpPublish(gw.url, channel, 'via sse');
        await until(() => got.length === 1, 'a message');
      } finally {
        client.close();
      }
      assert.equal(got[0]!.transport, 'sse');
      assert.deepEqual(
        ofType(events, 'error').map((e) => [e.code, e.transport]),
        [['CONNECT_FAILED', 'websocket']],
      );
      assert.deepEqual(ofType(events, 'open'), [{ transport: 'sse' }]);
      await drained(gw);
    });

    it('when a WebSocket never opens: after connectTimeoutMs, SSE', async () => {
      const channel = `/${unique('fb-hang-')}`;
      let closed = 0;
      const Hanging = class {
        readyState = 0;
        protocol = '';
        onopen = null;
        onmessage = null;
        onerror = null;
        onclose = null;
        send(): void {}
        close(): void {
          closed++;
        }
      };
      const client = makeClient(gw, ['websocket', 'sse'], { WebSocket: Hanging, connectTimeoutMs: 300 });
      const events = record(client);
      try {
        client.subscribe(channel, () => undefined);
        await ready(gw, client, 'sse', 1);
      } finally {
        client.close();
      }
      assert.deepEqual(
        ofType(events, 'error').map((e) => [e.code, e.transport]),
        [['CONNECT_TIMEOUT', 'websocket']],
      );
      assert.equal(closed, 1, 'the hanging socket was closed');
      await drained(gw);
    });

    it('when there is no EventSource, or the SSE request is refused: long-poll', async () => {
      for (const variant of ['missing', 'refused'] as const) {
        const channel = `/${unique('fb-lp-')}`;
        const urls: string[] = [];
        const client = makeClient(gw, ['websocket', 'sse', 'long-poll'], {
          WebSocket: null,
          // A refused stream: a path the gateway answers 404 to.
          EventSource: variant === 'missing' ? null : recordingEventSource(urls, (u) => u.replace(channel, '/_warren/nothing')),
        });
        const events = record(client);
        const got: WarrenMessage[] = [];
        try {
          client.subscribe(channel, (m) => got.push(m));
          await ready(gw, client, 'long-poll', 1);
          await httpPublish(gw.url, channel, 'via long-poll');
          await until(() => got.length === 1, 'a message');
        } finally {
          client.close();
        }
        assert.equal(got[0]!.transport, 'long-poll');
        assert.deepEqual(
          ofType(events, 'error').map((e) => [e.code, e.transport]),
          [['TRANSPORT_UNAVAILABLE', 'websocket'], variant === 'missing' ? ['TRANSPORT_UNAVAILABLE', 'sse'] : ['CONNECT_FAILED', 'sse']],
          variant,
        );
        if (variant === 'refused') assert.equal(ofType(events, 'error')[1]!.status, 404);
        assert.deepEqual(ofType(events, 'open'), [{ transport: 'long-poll' }]);
      }
      await drained(gw);
    });
  });

  for (const transport of TRANSPORTS) {
    it(`reconnects over ${transport} to a gateway restarted on the same port, with backoff, and resumes from the last id`, async () => {
      const first = await startGateway('memory');
      const port = portOf(first);
      let second: TestGateway | undefined;
      const channel = `/${unique('restart-')}`;
      const consumerId = unique('c_restart_');
      const frames: Array<Record<string, unknown>> = [];
      const urls: string[] = [];
      const fetchUrls: string[] = [];
      const client = makeClient(first, [transport], {
        consumerId,
        WebSocket: recordingWebSocket(frames),
        EventSource: recordingEventSource(urls),
        fetch: (url, init) => {
          fetchUrls.push(url);
          return fetch(url, init);
        },
      });
      const events = record(client);
      const got: WarrenMessage[] = [];
      try {
        client.subscribe(channel, (m) => got.push(m));
        await ready(first, client, transport, 1);
        await httpPublish(first.url, channel, 'before', { 'message-id': 'r-1' });
        await until(() => got.length === 1, 'the first message');

        await stop(first);
        await until(() => ofType(events, 'close').length === 1, 'the close event');
        assert.deepEqual(ofType(events, 'close')[0], {
          transport,
          reconnect: true,
          ...(transport === 'websocket' ? { code: 1001, reason: 'shutdown' } : {}),
        });
        // Reconnection attempts fail while nothing listens, and do not spin.
        await until(() => ofType(events, 'error').length >= 3, 'failed reconnection attempts');
        const failedBefore = ofType(events, 'error').length;
        await new Promise((r) => setTimeout(r, 400));
        assert.ok(ofType(events, 'error').length - failedBefore < 40, 'attempts are spaced by the backoff');

        second = await startGateway('memory', { port });
        await until(() => ofType(events, 'open').length === 2, 'the client to reconnect', 10_000);
        await ready(second, client, transport, 1);
        await httpPublish(second.url, channel, 'after', { 'message-id': 'r-2' });
        await until(() => got.length === 2, 'the message published after the restart');
      } finally {
        client.close();
        await first.close();
        await second?.close();
      }
      assert.deepEqual(
        got.map((m) => [m.id, m.data]),
        [
          ['r-1', 'before'],
          ['r-2', 'after'],
        ],
      );
      assert.deepEqual(
        events.filter((e) => e.type !== 'error' && e.type !== 'message').map((e) => e.type),
        ['open', 'close', 'open', 'close'],
      );
      assert.equal(client.consumerId, consumerId);
      if (transport === 'websocket') {
        const subscribes = frames.filter((f) => f.type === 'subscribe');
        assert.deepEqual(subscribes[0], { type: 'subscribe', channel });
        assert.deepEqual(subscribes.at(-1), { type: 'subscribe', channel, lastEventId: 'r-1' });
      } else if (transport === 'sse') {
        assert.equal(new URL(urls[0]!).searchParams.get('last_event_id'), null);
        assert.equal(new URL(urls.at(-1)!).searchParams.get('last_event_id'), 'r-1');
        for (const url of urls) assert.equal(new URL(url).searchParams.get('consumer_id'), consumerId);
      } else {
        for (const url of fetchUrls) assert.equal(new URL(url).searchParams.get('consumer_id'), consumerId);
      }
    });
  }

  for (const transport of TRANSPORTS) {
    it(`unsubscribe and close over ${transport} free every stream on the gateway`, async () => {
      const a = `/${unique('free-a-')}`;
      const b = `/${unique('free-b-')}`;
      const client = makeClient(gw, [transport]);
      const events = record(client);
      const first: string[] = [];
      const second: string[] = [];
      const subA1 = client.subscribe(a, (m) => first.push(m.data));
      const subA2 = client.subscribe(a, (m) => second.push(m.data));
      const subB = client.subscribe(b, () => undefined);
      const count = (): number => {
        const s = gw.gateway.stats();
        return transport === 'long-poll' ? s.longPoll.active : transport === 'sse' ? s.streams.sse : s.streams.identified;
      };
      try {
        await ready(gw, client, transport, 2);
        assert.equal(count(), 2);
        // Two subscriptions to one channel share its stream; dropping one keeps it.
        subA1.unsubscribe();
        subA1.unsubscribe();
        await httpPublish(gw.url, a, 'x', { 'message-id': 'f-1' });
        await until(() => second.length === 1, 'the message on the remaining subscription');
        assert.deepEqual(first, []);
        assert.equal(subA2.lastEventId, 'f-1');
        subA2.unsubscribe();
        await until(() => count() === 1, 'one stream left');
        if (transport === 'websocket') assert.equal(gw.gateway.stats().streams.websocket, 1);
        subB.unsubscribe();
        await drained(gw);
        assert.equal(client.transport, undefined);
        assert.deepEqual(ofType(events, 'close'), [{ transport, reconnect: false }]);

        // Subscribing again connects again; close() frees it all.
        client.subscribe(a, () => undefined);
        await ready(gw, client, transport, 1);
      } finally {
        client.close();
      }
      client.close();
      await drained(gw);
      assert.deepEqual(ofType(events, 'open'), [{ transport }, { transport }]);
      assert.throws(
        () => client.subscribe(a, () => undefined),
        (err: WarrenClientError) => err.code === 'CLIENT_CLOSED',
      );
    });
  }

  it('emits typed events: open, message, error, close; on() returns a remover', async () => {
    const channel = `/${unique('events-')}`;
    const client = makeClient(gw, ['websocket']);
    const seen: string[] = [];
    client.on('open', (e) => {
      const t: TransportName = e.transport;
      seen.push(`open:${t}`);
    });
    client.on('message', (m) => {
      const data: string = m.data;
      seen.push(`message:${m.channel}:${data}`);
    });
    client.on('close', (e) => {
      const again: boolean = e.reconnect;
      seen.push(`close:${e.transport}:${again}`);
    });
    const removed: string[] = [];
    const off = client.on('message', (m) => removed.push(m.id));
    // @ts-expect-error: not an event of the client
    assert.throws(() => client.on('nope', () => undefined));
    client.subscribe(channel, () => undefined);
    await ready(gw, client, 'websocket', 1);
    await httpPublish(gw.url, channel, 'one', { 'message-id': 'ev-1' });
    await until(() => removed.length === 1, 'the first message');
    off();
    await httpPublish(gw.url, channel, 'two', { 'message-id': 'ev-2' });
    await until(() => seen.length === 3, 'the second message');
    client.close();
    assert.deepEqual(seen, ['open:websocket', `message:${channel}:one`, `message:${channel}:two`, 'close:websocket:false']);
    assert.deepEqual(removed, ['ev-1']);

    // Nothing listens on this port: every transport fails to open, each one an error event, and no open.
    const dead = await startGateway('memory');
    await dead.close();
    const lonely = makeClient(dead, TRANSPORTS);
    const errors: WarrenClientError[] = [];
    lonely.on('error', (e) => errors.push(e));
    lonely.on('open', () => assert.fail('nothing to open'));
    lonely.subscribe('/nobody', () => undefined);
    await until(() => errors.length >= 6, 'two rounds of failed attempts');
    lonely.close();
    assert.ok(errors.every((e) => e instanceof WarrenClientError));
    assert.deepEqual(
      errors.slice(0, 3).map((e) => e.transport),
      TRANSPORTS,
    );
    assert.ok(
      errors.every((e) => e.code === 'CONNECT_FAILED'),
      errors.map((e) => e.code).join(),
    );
  });

  it('keeps one consumer id: generated (c_ + 22 base64url), saved in storage, and the queue the gateway keeps is that one', async () => {
    const store = new Map<string, string>();
    const storage: StorageLike = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => void store.set(k, v) };
    const one = makeClient(gw, ['long-poll'], { storage });
    assert.match(one.consumerId!, /^c_[A-Za-z0-9_-]{22}$/);
    assert.equal(store.get(CONSUMER_ID_STORAGE_KEY), one.consumerId);
    const two = makeClient(gw, ['long-poll'], { storage });
    assert.equal(two.consumerId, one.consumerId, 'the saved id is reused');
    store.set(CONSUMER_ID_STORAGE_KEY, 'not a valid id!');
    const three = makeClient(gw, ['long-poll'], { storage });
    assert.match(three.consumerId!, /^c_/);
    assert.notEqual(three.consumerId, one.consumerId);
    assert.equal(store.get(CONSUMER_ID_STORAGE_KEY), three.consumerId);
    const broken: StorageLike = {
      getItem: () => {
        throw new Error('denied');
      },
      setItem: () => {
        throw new Error('denied');
      },
    };
    assert.match(makeClient(gw, ['long-poll'], { storage: broken }).consumerId!, /^c_/);
    assert.notEqual(makeClient(gw, ['long-poll']).consumerId, makeClient(gw, ['long-poll']).consumerId, 'storage: null keeps nothing');
    assert.throws(
      () => makeClient(gw, ['long-poll'], { consumerId: 'bad id' }),
      (err: WarrenClientError) => err.code === 'INVALID_CONSUMER_ID',
    );
    assert.throws(
      () => one.subscribe('/_warren/ws', () => undefined),
      (err: WarrenClientError) => err.code === 'INVALID_CHANNEL',
    );
    assert.throws(
      () => one.subscribe('no-slash', () => undefined),
      (err: WarrenClientError) => err.code === 'INVALID_CHANNEL',
    );

    // On every transport, the queue the gateway kept for the client is under client.consumerId.
    for (const transport of TRANSPORTS) {
      const channel = `/${unique('identity-')}`;
      const client = makeClient(gw, [transport]);
      const got: string[] = [];
      client.subscribe(channel, (m) => got.push(m.data));
      await ready(gw, client, transport, 1);
      await httpPublish(gw.url, channel, 'live');
      await until(() => got.length === 1, 'a live message');
      // Past the receipt time: 'live' counts as received over SSE too (closed sooner, it would come again).
      await new Promise((r) => setTimeout(r, RECEIPT_MS + 300));
      client.close();
      await drained(gw);
      await httpPublish(gw.url, channel, 'kept while away');
      const polled = await poll(gw.url, channel, { consumerId: client.consumerId, timeout: 0 });
      assert.equal(polled.status, 200, transport);
      assert.equal(polled.body, 'kept while away', transport);
    }
  });

  for (const transport of TRANSPORTS) {
    it(`leaves nothing running over ${transport}: a Node process exits by itself once the client is closed`, async () => {
      const channel = `/${unique('exit-')}`;
      const dead = await startGateway('memory');
      await dead.close();
      // One child receives a message, then closes. The other fails to reach
      // a dead port and closes while its (long) backoff timer is pending:
      // right after close() it must hold no timer at all.
      for (const mode of ['live', 'retrying'] as const) {
        const url = mode === 'live' ? gw.url : dead.url;
        const script = `
          import { WebSocket } from 'ws';
          import { EventSource } from 'eventsource';
          import { WarrenClient } from '@warren/client';
          const client = new WarrenClient({ url: ${JSON.stringify(url)}, transports: [${JSON.stringify(transport)}], WebSocket, EventSource,
            reconnect: ${mode === 'live' ? '{ minMs: 50, maxMs: 300 }' : '{ minMs: 20000, maxMs: 20000 }'}, storage: null });
          const close = () => {
            client.close();
            console.log('closed');
            setImmediate(() => console.log('timers ' + process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length));
          };
          client.on('open', () => console.log('open'));
          client.on('error', (e) => { console.log('error ' + e.code); setTimeout(close, 50); });
          client.subscribe(${JSON.stringify(channel)}, (m) => { console.log('message ' + m.data); close(); });
        `;
        const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let closedAt = 0;
        child.stdout.on('data', (c: Buffer) => {
          out += c.toString();
          if (closedAt === 0 && out.includes('closed')) closedAt = Date.now();
        });
        child.stderr.on('data', (c: Buffer) => (out += c.toString()));
        const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
        const kill = setTimeout(() => child.kill('SIGKILL'), 20_000);
        try {
          if (mode === 'live') {
            await until(() => out.includes('open'), `the child to open: ${out}`, 15_000);
            if (transport === 'websocket') await until(() => gw.gateway.stats().streams.identified >= 1, 'the stream');
            await httpPublish(gw.url, channel, 'ping');
          }
          const code = await exited;
          assert.equal(code, 0, out);
          assert.ok(closedAt > 0, out);
          assert.ok(Date.now() - closedAt < 2000, `the process lingered ${Date.now() - closedAt} ms after close()`);
          if (mode === 'live') {
            assert.match(out, /^message ping$/m);
            assert.doesNotMatch(out, /^error/m);
          } else {
            assert.match(out, /^error CONNECT_FAILED$/m);
            assert.match(out, /^timers 0$/m, out);
          }
        } finally {
          clearTimeout(kill);
          child.kill('SIGKILL');
        }
      }
      await drained(gw);
    });
  }

  it('builds to plain ES modules that import nothing but their own relative files', () => {
    const files: string[] = [];
    const walk = (dir: string): void => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        if (entry.isDirectory()) walk(join(dir, entry.name));
        else if (entry.name.endsWith('.js')) files.push(join(dir, entry.name));
      }
    };
    walk(CLIENT_DIST);
    assert.ok(files.length >= 5);
    for (const file of files) {
      const source = readFileSync(file, 'utf8');
      for (const m of source.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s*['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]/g)) {
        const specifier = m[1] ?? m[2]!;
        assert.match(specifier, /^\.\.?\/.*\.js$/, `${file} imports ${specifier}`);
      }
      assert.doesNotMatch(source, /\brequire\(|\bprocess\.|\bBuffer\b/, file);
    }
  });
});

describe('WarrenClient on RabbitMQ: nothing published while disconnected is lost', () => {
  for (const transport of TRANSPORTS) {
    it(`over ${transport}: messages published while its gateway was down arrive after reconnect, in order, none twice`, async () => {
      const publisher = await startGateway('rabbitmq');
      let gateway: TestGateway | undefined = await startGateway('rabbitmq');
      const port = portOf(gateway);
      const channel = `/${unique('away-')}`;
      const client = makeClient(gateway, [transport], { consumerId: unique('c_away_') });
      const events = record(client);
      const got: WarrenMessage[] = [];
      try {
        client.subscribe(channel, (m) => got.push(m));
        await ready(gateway, client, transport, 1);
        await httpPublish(publisher.url, channel, 'a', { 'message-id': 'a-1' });
        await until(() => got.length === 1, 'the first message');

        await stop(gateway);
        gateway = undefined;
        await until(() => ofType(events, 'close').length === 1, 'the client to see its gateway go');
        for (let i = 1; i <= 5; i++) {
          const res = await httpPublish(publisher.url, channel, `b${i}`, { 'message-id': `b-${i}` });
          assert.equal(res.status, 200);
        }
        gateway = await startGateway('rabbitmq', { port });
        await until(() => got.length === 6, `the five messages kept while away (got ${got.map((m) => m.id)})`, 20_000);
        await httpPublish(publisher.url, channel, 'c', { 'message-id': 'c-1' });
        await until(() => got.length === 7, 'the message after');
        await new Promise((r) => setTimeout(r, 200));
      } finally {
        client.close();
        await gateway?.close();
        await publisher.close();
      }
      assert.deepEqual(
        got.map((m) => m.id),
        ['a-1', 'b-1', 'b-2', 'b-3', 'b-4', 'b-5', 'c-1'],
      );
      assert.deepEqual(
        got.map((m) => m.data),
        ['a', 'b1', 'b2', 'b3', 'b4', 'b5', 'c'],
      );
      assert.ok(got.every((m) => m.transport === transport));
    });
  }
});

const CHROMIUM = process.env.WARREN_TEST_CHROMIUM ?? '/usr/bin/chromium';

// No skip without a browser: .ci/run installs Debian's chromium, and a missing one must fail, not pass silently.
describe('WarrenClient in a browser (Chromium), loaded with <script type="module"> from a static server', () => {
  let site: Server;
  let origin: string;
  let gw: TestGateway;
  let browser: import('playwright-core').Browser;

  before(async () => {
    site = createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      if (path === '/') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end('<!doctype html><script type="module">import * as warren from "/client/index.js"; window.warren = warren;</script>');
        return;
      }
      const file = join(CLIENT_DIST, path.replace(/^\/client\//, ''));
      if (!path.startsWith('/client/') || path.includes('..') || !existsSync(file)) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': file.endsWith('.js') ? 'text/javascript' : 'application/octet-stream' });
      res.end(readFileSync(file));
    });
    await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
    // A page on another origin: SSE and long-poll need CORS, a WebSocket does not.
    gw = await startGateway('memory', { corsOrigins: origin });
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
  });
  after(async () => {
    await browser?.close();
    await gw?.close();
    await new Promise((r) => site?.close(r));
  });

  it("delivers over each transport with the browser's own WebSocket, EventSource and fetch, and keeps the consumer id in localStorage", async () => {
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(String(err)));
    await page.goto(`${origin}/`);
    await page.waitForFunction(() => (globalThis as any).warren !== undefined);
    let consumerId: string | undefined;
    for (const transport of TRANSPORTS) {
      const channel = `/${unique('browser-')}`;
      const id = await page.evaluate(
        ({ url, transport, channel }) => {
          const w = globalThis as any;
          w.got = [];
          w.client = new w.warren.WarrenClient({ url, transports: [transport], reconnect: { minMs: 20, maxMs: 200 } });
          w.client.subscribe(channel, (m: any) => w.got.push({ id: m.id, data: m.data, transport: m.transport }));
          return w.client.consumerId as string;
        },
        { url: gw.url, transport, channel },
      );
      consumerId ??= id;
      assert.equal(id, consumerId, 'one id for the page, from localStorage');
      await page.waitForFunction((t) => (globalThis as any).client.transport === t, transport);
      if (transport === 'websocket') await until(() => gw.gateway.stats().streams.identified >= 1, 'the stream');
      await httpPublish(gw.url, channel, `hello ${transport}`, { 'message-id': `web-${transport}` });
      await page.waitForFunction(() => (globalThis as any).got.length === 1);
      assert.deepEqual(await page.evaluate(() => (globalThis as any).got), [
        { id: `web-${transport}`, data: `hello ${transport}`, transport },
      ]);
      await page.evaluate(() => (globalThis as any).client.close());
      await drained(gw);
    }
    assert.match(consumerId!, /^c_[A-Za-z0-9_-]{22}$/);
    assert.equal(await page.evaluate((key) => (globalThis as any).localStorage.getItem(key), CONSUMER_ID_STORAGE_KEY), consumerId);
    await page.reload();
    await page.waitForFunction(() => (globalThis as any).warren !== undefined);
    assert.equal(
      await page.evaluate((url) => new (globalThis as any).warren.WarrenClient({ url }).consumerId, gw.url),
      consumerId,
      'the id survives a reload',
    );
    assert.deepEqual(problems, []);
    await page.close();
  });
});
