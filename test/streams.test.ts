import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { EventSource } from 'eventsource';
import { WebSocket } from 'ws';
import { RECEIPT_MS } from '#gateway/sources/queue-subscription.js';
import { BROKERS, hangUpMidResponse, httpPublish, poll, readSse, startGateway, unique, until, type TestGateway } from './support/index.js';

/** An EventSource (the `eventsource` package) that sends extra headers. */
function eventSource(url: string, headers: Record<string, string> = {}): EventSource {
  return new EventSource(url, { fetch: (input, init) => fetch(input, { ...init, headers: { ...init?.headers, ...headers } }) });
}

function collect(es: EventSource, events: string[] = ['message']): Array<{ type: string; id: string; data: string }> {
  const got: Array<{ type: string; id: string; data: string }> = [];
  for (const type of events) es.addEventListener(type, (e: MessageEvent) => got.push({ type, id: e.lastEventId, data: String(e.data) }));
  return got;
}

function openSocket(url: string, protocol?: string): Promise<{ ws: WebSocket; frames: Array<{ text: string; binary: boolean }> }> {
  const ws = protocol === undefined ? new WebSocket(url) : new WebSocket(url, protocol);
  const frames: Array<{ text: string; binary: boolean }> = [];
  ws.on('message', (data, binary) => frames.push({ text: data.toString(), binary }));
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws, frames }));
    ws.once('error', reject);
  });
}

const json = (frames: Array<{ text: string }>) => frames.map((f) => JSON.parse(f.text) as Record<string, any>);

/** A raw HTTP GET of an SSE stream over a plain socket: every byte the gateway sends, as it came. */
async function rawSse(base: string, path: string, version: '1.0' | '1.1', headers: Record<string, string> = {}) {
  const url = new URL(base);
  const socket: Socket = connect(Number(url.port), url.hostname);
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => chunks.push(d));
  await new Promise((r) => socket.once('connect', r));
  const extra = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  socket.write(`GET ${path} HTTP/${version}\r\nHost: ${url.host}\r\nAccept: text/event-stream\r\n${extra}\r\n`);
  const text = () => Buffer.concat(chunks).toString('latin1');
  return { socket, bytes: () => Buffer.concat(chunks), text };
}

/** The body of a chunked response, checking that each chunk's size is its exact byte count. */
function dechunk(body: Buffer): Buffer {
  const out: Buffer[] = [];
  let at = 0;
  while (at < body.length) {
    const eol = body.indexOf('\r\n', at);
    assert.ok(eol > at, `a chunk size line at byte ${at}`);
    const sizeLine = body.subarray(at, eol).toString('latin1');
    assert.match(sizeLine, /^[0-9a-f]+$/i, `a hex chunk size, not ${JSON.stringify(sizeLine)}`);
    const size = parseInt(sizeLine, 16);
    if (eol + 2 + size + 2 > body.length) break; // the last chunk is still on its way
    out.push(body.subarray(eol + 2, eol + 2 + size));
    assert.equal(body.subarray(eol + 2 + size, eol + 4 + size).toString('latin1'), '\r\n', `chunk of ${size} bytes ends with CRLF`);
    at = eol + 4 + size;
  }
  return Buffer.concat(out);
}

for (const kind of BROKERS) {
  describe(`Server-Sent Events on the ${kind} broker`, () => {
    let gw: TestGateway;
    before(async () => {
      gw = await startGateway(kind, { sseHeartbeatMs: 200, sseRetryMs: 1500, maxMessageBytes: 32 * 1024 * 1024 });
    });
    after(() => gw.close());

    it('streams each message as one event: id, event name, data split on line breaks; binary as base64', async () => {
      const channel = `/${unique('sse-')}`;
      const es = eventSource(`${gw.url}${channel}`);
      const got = collect(es, ['message', 'greet']);
      try {
        // Once open, the stream misses nothing published.
        await new Promise((r) => es.addEventListener('open', r));
        await httpPublish(gw.url, channel, 'line one\nline two\r\nline three', { 'message-id': 'e-1', 'warren-event': 'greet' });
        await httpPublish(gw.url, channel, '{"n":1}', { 'message-id': 'e-2', 'content-type': 'application/json' });
        await httpPublish(gw.url, channel, '\u0000\u0001\u0002', { 'message-id': 'e-3', 'content-type': 'application/octet-stream' });
        await until(() => got.length === 3, 'three events');
      } finally {
        es.close();
      }
      assert.deepEqual(got, [
        { type: 'greet', id: 'e-1', data: 'line one\nline two\nline three' },
        { type: 'message', id: 'e-2', data: '{"n":1}' },
        { type: 'message', id: 'e-3', data: Buffer.from([0, 1, 2]).toString('base64') },
      ]);
    });

    it('frames every event as one well-formed chunk for HTTP/1.1 and sends it unframed to an HTTP/1.0 client', async () => {
      const channel = `/${unique('sse-raw-')}`;
      const body = 'héllo ✓ 🐇\nsecond line';
      const want = `id: r-1\nevent: greet\ndata: héllo ✓ 🐇\ndata: second line\n\n`;
      const streams: Array<{ version: '1.0' | '1.1'; headers: Record<string, string> }> = [
        { version: '1.1', headers: {} },
        { version: '1.1', headers: { 'consumer-id': unique('raw-') } },
        { version: '1.0', headers: {} },
      ];
      const raws = await Promise.all(streams.map((s) => rawSse(gw.url, channel, s.version, s.headers)));
      try {
        for (const raw of raws) await until(() => raw.text().includes(': warren'), 'the stream opened');
        await httpPublish(gw.url, channel, body, { 'message-id': 'r-1', 'warren-event': 'greet' });
        await httpPublish(gw.url, channel, 'two', { 'message-id': 'r-2' });
        for (const [k, raw] of raws.entries()) {
          await until(() => raw.text().includes('data: two\n\n'), `stream ${k} got both events`);
          const all = raw.bytes();
          const split = all.indexOf('\r\n\r\n');
          const head = all.subarray(0, split).toString('latin1');
          const rest = all.subarray(split + 4);
          const events = streams[k]!.version === '1.1' ? dechunk(rest) : rest;
          if (streams[k]!.version === '1.1') assert.match(head, /transfer-encoding: chunked/i);
          else assert.doesNotMatch(head, /transfer-encoding/i, 'no chunked encoding for HTTP/1.0');
          const text = events.toString('utf8');
          assert.ok(text.includes(want), `stream ${k} (HTTP/${streams[k]!.version}) carries the event intact: ${JSON.stringify(text)}`);
          assert.ok(text.endsWith('id: r-2\ndata: two\n\n'), `stream ${k}: the second event follows: ${JSON.stringify(text)}`);
        }
      } finally {
        for (const raw of raws) raw.socket.destroy();
      }
    });

    it('sends headers right for proxies, a retry hint and heartbeat comments', async () => {
      const reader = readSse(gw.url, `/${unique('hb-')}`);
      assert.equal(await reader.status, 200);
      const headers = await reader.headers;
      assert.equal(headers['content-type'], 'text/event-stream; charset=utf-8');
      assert.match(String(headers['cache-control']), /no-cache/);
      assert.equal(headers['x-accel-buffering'], 'no');
      assert.equal(headers['content-encoding'], undefined);
      await until(() => (reader.raw().match(/: ping\n\n/g) ?? []).length >= 2, 'two heartbeats', 3000);
      assert.ok(reader.raw().startsWith('retry: 1500\n'));
      reader.close();
    });

    it('sends no heartbeat to a stream that carries messages, and heartbeats again once it is idle', async () => {
      const channel = `/${unique('busy-')}`;
      const reader = readSse(gw.url, channel);
      assert.equal(await reader.status, 200);
      await until(() => reader.raw().includes(': warren'), 'the stream open');
      // A message every 50 ms for 10 heartbeat intervals (200 ms each).
      const start = reader.raw().length;
      for (let i = 0; i < 40; i++) {
        await httpPublish(gw.url, channel, `m${i}`);
        await sleep(50);
      }
      await until(() => reader.raw().includes('data: m39'), 'the last message');
      const busy = reader.raw().slice(start);
      assert.equal((busy.match(/data: m\d+/g) ?? []).length, 40);
      assert.equal((busy.match(/: ping\n\n/g) ?? []).length, 0, 'no heartbeat while messages flow');
      const idle = reader.raw().length;
      await until(
        () =>
          (
            reader
              .raw()
              .slice(idle)
              .match(/: ping\n\n/g) ?? []
          ).length >= 2,
        'heartbeats once idle',
        3000,
      );
      reader.close();
    });

    it('refuses a bad channel, consumer id or Last-Event-ID with JSON before streaming', async () => {
      for (const [path, headers, code] of [
        ['/a/../b', {}, 'INVALID_CHANNEL'],
        ['/ok', { 'consumer-id': 'bad id' }, 'INVALID_CONSUMER_ID'],
        ['/ok', { 'consumer-id': 'fine', 'last-event-id': 'has space' }, 'INVALID_MESSAGE_ID'],
      ] as const) {
        const reader = readSse(gw.url, path, headers);
        assert.equal(await reader.status, 400);
        await reader.closed;
        assert.equal(JSON.parse(reader.raw()).code, code);
      }
    });

    it('an identified consumer that disconnects while 500 messages are published gets all 500 on reconnect with Last-Event-ID, in order, none twice', async () => {
      const channel = `/${unique('resume-')}`;
      const consumerId = unique('sse-');
      const first = eventSource(`${gw.url}${channel}?consumer_id=${consumerId}`);
      const seen = collect(first);
      try {
        await new Promise((r) => first.addEventListener('open', r));
        await httpPublish(gw.url, channel, 'before', { 'message-id': 'before' });
        await until(() => seen.length === 1, 'the first message');
      } finally {
        first.close();
      }
      await until(() => gw.gateway.stats().streams.identified === 0, 'the stream to close');
      for (let i = 0; i < 500; i++) await httpPublish(gw.url, channel, String(i), { 'message-id': `r-${i}` });
      const second = eventSource(`${gw.url}${channel}?consumer_id=${consumerId}`, { 'last-event-id': seen[0]!.id });
      const again = collect(second);
      try {
        await until(() => again.length >= 500, '500 messages after reconnecting', 20_000);
        await new Promise((r) => setTimeout(r, 200));
      } finally {
        second.close();
      }
      assert.deepEqual(
        again.map((e) => e.data),
        Array.from({ length: 500 }, (_, i) => String(i)),
      );
    });

    it('on resume, acknowledges without resending what came back unacknowledged up to Last-Event-ID', async () => {
      const channel = `/${unique('skip-')}`;
      const consumerId = unique('skip-');
      await poll(gw.url, channel, { consumerId, timeout: 0 });
      // Make "first" come back unacknowledged (redelivered): a long-poll takes
      // it but its client hangs up with the 20 MB response unwritten.
      await httpPublish(gw.url, channel, 'x'.repeat(20 * 1024 * 1024), { 'message-id': 'first' });
      await httpPublish(gw.url, channel, 'second', { 'message-id': 'second' });
      await httpPublish(gw.url, channel, 'third', { 'message-id': 'third' });
      await hangUpMidResponse(gw, channel, consumerId);
      // The client says it has "first" (it got it over some other path): skip it.
      const reader = readSse(gw.url, `${channel}?consumer_id=${consumerId}&last_event_id=first`);
      await until(() => reader.events.length >= 2, 'two events');
      // Open past the receipt time: the two events count as received (acknowledged).
      await sleep(RECEIPT_MS + 300);
      reader.close();
      assert.deepEqual(
        reader.events.map((e) => e.id),
        ['second', 'third'],
      );
      await until(() => gw.gateway.stats().streams.identified === 0, 'the stream to stop');
      assert.equal((await poll(gw.url, channel, { consumerId, timeout: 0 })).status, 204, '"first" was acknowledged, not left behind');
    });

    it('with a Last-Event-ID not among the redelivered messages, resends them all', async () => {
      const channel = `/${unique('noskip-')}`;
      const consumerId = unique('noskip-');
      await poll(gw.url, channel, { consumerId, timeout: 0 });
      await httpPublish(gw.url, channel, 'y'.repeat(20 * 1024 * 1024), { 'message-id': 'big' });
      await httpPublish(gw.url, channel, 'after', { 'message-id': 'after' });
      await hangUpMidResponse(gw, channel, consumerId);
      const reader = readSse(gw.url, `${channel}?consumer_id=${consumerId}&last_event_id=something-else`);
      await until(() => reader.events.length >= 2, 'both events', 10_000);
      reader.close();
      assert.deepEqual(
        reader.events.map((e) => e.id),
        ['big', 'after'],
      );
    });
  });

  describe(`WebSocket on the ${kind} broker`, () => {
    let gw: TestGateway;
    before(async () => {
      gw = await startGateway(kind, { wsMaxPayload: 1024, wsMaxSubscriptions: 3, wsPingIntervalMs: 300 });
    });
    after(() => gw.close());
    const ws = (path: string) => gw.url.replace('http', 'ws') + path;

    it('a plain socket on a channel path receives its messages as text or binary frames', async () => {
      const channel = `/${unique('plain-')}`;
      // Once open, the socket misses nothing published.
      const { ws: socket, frames } = await openSocket(ws(channel));
      await httpPublish(gw.url, channel, 'hello', { 'content-type': 'text/plain' });
      await httpPublish(gw.url, channel, '\u0001\u0002', { 'content-type': 'application/octet-stream' });
      await until(() => frames.length === 2, 'two frames');
      assert.deepEqual(frames, [
        { text: 'hello', binary: false },
        { text: '\u0001\u0002', binary: true },
      ]);
      socket.send('hi from the client');
      await until(() => frames.length === 3, 'an error frame');
      assert.equal(JSON.parse(frames[2]!.text).code, 'NO_APP_CONFIGURED');
      socket.close();
    });

    it('warren.v1: subscribes to several channels, unsubscribes, answers commands and errors in JSON', async () => {
      const a = `/${unique('va-')}`;
      const b = `/${unique('vb-')}`;
      const { ws: socket, frames } = await openSocket(ws('/_warren/ws'), 'warren.v1');
      assert.equal(socket.protocol, 'warren.v1');
      socket.send(JSON.stringify({ type: 'subscribe', channel: a }));
      socket.send(JSON.stringify({ type: 'subscribe', channel: b }));
      await until(() => json(frames).filter((f) => f.type === 'subscribed').length === 2, 'two subscriptions');
      await httpPublish(gw.url, [a, b], 'to both', { 'message-id': 'both-1', 'warren-event': 'note' });
      await until(() => json(frames).filter((f) => f.type === 'message').length === 2, 'two messages');
      const messages = json(frames).filter((f) => f.type === 'message');
      assert.deepEqual(messages.map((m) => m.channel).sort(), [a, b].sort());
      assert.deepEqual(messages[0], {
        type: 'message',
        channel: messages[0]!.channel,
        id: 'both-1',
        event: 'note',
        contentType: 'text/plain',
        data: 'to both',
      });
      socket.send(JSON.stringify({ type: 'unsubscribe', channel: a }));
      await until(() => json(frames).some((f) => f.type === 'unsubscribed' && f.channel === a), 'unsubscribed');
      await httpPublish(gw.url, [a, b], 'only b', { 'message-id': 'b-only' });
      await until(() => json(frames).filter((f) => f.type === 'message').length === 3, 'a third message');
      await new Promise((r) => setTimeout(r, 100));
      const last = json(frames).filter((f) => f.type === 'message');
      assert.equal(last.length, 3);
      assert.equal(last[2]!.channel, b);
      socket.send('not json');
      socket.send(JSON.stringify({ type: 'subscribe', channel: '/a/../b' }));
      socket.send(JSON.stringify({ type: 'send', channel: b, data: 'x' }));
      await until(() => json(frames).filter((f) => f.type === 'error').length === 3, 'three errors');
      assert.deepEqual(
        json(frames)
          .filter((f) => f.type === 'error')
          .map((f) => f.code),
        ['INVALID_FRAME', 'INVALID_CHANNEL', 'NO_APP_CONFIGURED'],
      );
      for (const c of ['/c1', '/c2', '/c3']) socket.send(JSON.stringify({ type: 'subscribe', channel: c }));
      await until(() => json(frames).some((f) => f.code === 'TOO_MANY_SUBSCRIPTIONS'), 'the subscription cap');
      socket.close();
    });

    it('closes with 1009 when a client frame exceeds wsMaxPayload', async () => {
      const { ws: socket } = await openSocket(ws(`/${unique('big-')}`));
      const closed = new Promise<number>((r) => socket.once('close', (code) => r(code)));
      socket.send('x'.repeat(2048));
      assert.equal(await closed, 1009);
    });

    it('drops a socket that stops answering pings', async () => {
      const socket = new WebSocket(ws(`/${unique('mute-')}`), { autoPong: false });
      await new Promise((r) => socket.once('open', r));
      const started = Date.now();
      const code = await new Promise<number>((r) => socket.once('close', (c) => r(c)));
      assert.equal(code, 1006, 'terminated, no close frame');
      assert.ok(Date.now() - started < 3000);
    });

    it('refuses a bad upgrade with an HTTP error before switching protocols', async () => {
      for (const [path, code] of [
        ['/_private', 'INVALID_CHANNEL'],
        ['/a/%2A', 'INVALID_CHANNEL'],
        ['/ok?consumer_id=bad%20id', 'INVALID_CONSUMER_ID'],
        ['/_warren/nope', 'NOT_FOUND'],
      ] as const) {
        const socket = new WebSocket(ws(path));
        socket.once('open', () => assert.fail(`${path} was upgraded`));
        const res = await new Promise<{ status: number; body: string }>((resolve) => {
          socket.once('unexpected-response', (_req, response) => {
            let body = '';
            response.on('data', (c: Buffer) => (body += c.toString()));
            response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
          });
        });
        assert.equal(JSON.parse(res.body).code, code, path);
        assert.ok(res.status === 400 || res.status === 404);
      }
    });

    it('an identified socket that disconnects while 500 messages are published gets all 500 on reconnect, in order, none twice', async () => {
      const channel = `/${unique('wsresume-')}`;
      const consumerId = unique('ws-');
      const first = await openSocket(ws(`${channel}?consumer_id=${consumerId}`), 'warren.v1');
      await until(
        () => json(first.frames).some((f) => f.type === 'subscribed') && gw.gateway.stats().streams.identified === 1,
        'subscribed',
      );
      first.ws.close();
      await until(() => gw.gateway.stats().streams.identified === 0, 'the socket to close');
      for (let i = 0; i < 500; i++) await httpPublish(gw.url, channel, String(i));
      const second = await openSocket(ws(`${channel}?consumer_id=${consumerId}`), 'warren.v1');
      await until(() => json(second.frames).filter((f) => f.type === 'message').length >= 500, '500 messages', 20_000);
      await new Promise((r) => setTimeout(r, 200));
      second.ws.close();
      assert.deepEqual(
        json(second.frames)
          .filter((f) => f.type === 'message')
          .map((f) => f.data),
        Array.from({ length: 500 }, (_, i) => String(i)),
      );
    });
  });

  describe(`long-poll, SSE and WebSocket taking turns on one queue, on the ${kind} broker`, () => {
    let gw: TestGateway;
    before(async () => {
      gw = await startGateway(kind);
    });
    after(() => gw.close());

    it('loses nothing and repeats nothing', async () => {
      const channel = `/${unique('turns-')}`;
      const consumerId = unique('turns-');
      const got: string[] = [];
      let n = 0;
      const publishTen = async () => {
        for (let i = 0; i < 10; i++) await httpPublish(gw.url, channel, String(n++));
      };
      await poll(gw.url, channel, { consumerId, timeout: 0 });
      await publishTen();
      for (let i = 0; i < 10; i++) got.push((await poll(gw.url, channel, { consumerId, timeout: 1 })).body);
      await publishTen();
      const sse = readSse(gw.url, `${channel}?consumer_id=${consumerId}`);
      await until(() => sse.events.length === 10, 'ten SSE events');
      // Open past the receipt time: an SSE event counts as received once the
      // connection stayed open a second after it (closed sooner, it would come again).
      await sleep(RECEIPT_MS + 300);
      sse.close();
      got.push(...sse.events.map((e) => e.data));
      await until(() => gw.gateway.stats().streams.identified === 0, 'the SSE stream to stop');
      await publishTen();
      const socket = await openSocket(`${gw.url.replace('http', 'ws')}${channel}?consumer_id=${consumerId}`);
      await until(() => socket.frames.length === 10, 'ten frames');
      socket.ws.close();
      got.push(...socket.frames.map((f) => f.text));
      await until(() => gw.gateway.stats().streams.identified === 0, 'the socket to stop');
      await publishTen();
      for (let i = 0; i < 10; i++) got.push((await poll(gw.url, channel, { consumerId, timeout: 1 })).body);
      assert.deepEqual(
        got,
        Array.from({ length: 40 }, (_, i) => String(i)),
      );
      assert.equal((await poll(gw.url, channel, { consumerId, timeout: 0 })).status, 204);
    });
  });
}
