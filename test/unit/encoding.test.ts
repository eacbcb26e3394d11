// SSE and warren.v1 encodings (packages/gateway/src/transports/encoding.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { WarrenMessage } from '@warren/protocol';
import {
  encodeSseData,
  encodeSseEvent,
  isTextual,
  messageFrame,
  messageFrameBytes,
  sseEventBytes,
  sseEventChunk,
} from '#gateway/transports/encoding.js';

const text = (body: string, extra: Partial<WarrenMessage> = {}): WarrenMessage => ({
  id: 'm1',
  contentType: 'text/plain; charset=utf-8',
  body: Buffer.from(body, 'utf8'),
  ...extra,
});
const BYTES = Buffer.from([0, 1, 2, 0xfe, 0xff, 0x0a, 0x0d]);

describe('isTextual', () => {
  it('takes text/*, JSON, XML, JavaScript and form data as text, in any case and with parameters', () => {
    for (const type of [
      'text/plain',
      'text/html; charset=utf-8',
      'TEXT/CSV',
      'application/json',
      'Application/JSON; charset=utf-8',
      'application/ld+json',
      'application/xml',
      'image/svg+xml',
      'application/javascript',
      'application/x-www-form-urlencoded',
    ]) {
      assert.equal(isTextual(type), true, type);
    }
  });

  it('takes everything else as binary', () => {
    for (const type of [
      'application/octet-stream',
      'image/png',
      'application/pdf',
      'application/jsonx',
      'application/protobuf',
      'video/mp4',
    ]) {
      assert.equal(isTextual(type), false, type);
    }
  });
});

describe('encodeSseEvent', () => {
  it('writes id, event and the body as one data line, then a blank line', () => {
    assert.equal(encodeSseEvent(text('hello', { event: 'greeting' })), 'id: m1\nevent: greeting\ndata: hello\n\n');
    assert.equal(encodeSseEvent(text('hello')), 'id: m1\ndata: hello\n\n');
  });

  it('splits the body on CRLF, CR and LF into several data lines', () => {
    assert.equal(encodeSseEvent(text('a\r\nb\rc\nd')), 'id: m1\ndata: a\ndata: b\ndata: c\ndata: d\n\n');
    // A trailing or doubled break is an empty data line (the client reads the break back).
    assert.equal(encodeSseEvent(text('x\n\ny\n')), 'id: m1\ndata: x\ndata: \ndata: y\ndata: \n\n');
    // Nothing a body holds can end the event or forge a field.
    const forged = encodeSseEvent(text('ok\n\nid: forged\nevent: x\r\ndata: y'));
    assert.equal(forged.split('\n\n').length, 2, 'one event, one terminating blank line');
    for (const line of forged.trimEnd().split('\n').slice(1)) assert.match(line, /^data: /);
  });

  it('sends a JSON body as text', () => {
    assert.equal(encodeSseEvent(text('{"a":1}', { contentType: 'application/json' })), 'id: m1\ndata: {"a":1}\n\n');
  });

  it('sends a binary body as base64 on one data line', () => {
    const out = encodeSseEvent({ id: 'b1', contentType: 'application/octet-stream', body: BYTES });
    assert.equal(out, `id: b1\ndata: ${BYTES.toString('base64')}\n\n`);
  });

  it('refuses CR or LF in the id or the event name', () => {
    for (const id of ['a\nb', 'a\rb', 'a\r\nb', '\n'])
      assert.throws(() => encodeSseEvent(text('x', { id })), /must not contain CR or LF/, JSON.stringify(id));
    for (const event of ['a\nb', 'a\rb', 'tick\r\n'])
      assert.throws(() => encodeSseEvent(text('x', { event })), /must not contain CR or LF/, JSON.stringify(event));
  });
});

describe('encodeSseData', () => {
  it('writes only the fields given, and the text as data lines', () => {
    assert.equal(encodeSseData('a\r\nb', {}), 'data: a\ndata: b\n\n');
    assert.equal(encodeSseData('x', { id: '7' }), 'id: 7\ndata: x\n\n');
    assert.equal(encodeSseData('x', { event: 'e' }), 'event: e\ndata: x\n\n');
    assert.equal(encodeSseData('x', { id: '7', event: 'e' }), 'id: 7\nevent: e\ndata: x\n\n');
  });

  it('sends a Buffer as base64', () => {
    assert.equal(encodeSseData(BYTES, {}), `data: ${BYTES.toString('base64')}\n\n`);
  });

  it('refuses CR or LF in the id or the event name', () => {
    assert.throws(() => encodeSseData('x', { id: '1\n2' }), /must not contain CR or LF/);
    assert.throws(() => encodeSseData('x', { event: 'e\r' }), /must not contain CR or LF/);
  });
});

describe('messageFrame (warren.v1)', () => {
  it('carries a text body as UTF-8, without an encoding field', () => {
    assert.deepEqual(messageFrame('/ch', text('hé\nllo', { event: 'tick' })), {
      type: 'message',
      channel: '/ch',
      id: 'm1',
      event: 'tick',
      contentType: 'text/plain; charset=utf-8',
      data: 'hé\nllo',
    });
  });

  it('carries a binary body as base64 and says so', () => {
    const frame = messageFrame('/ch', { id: 'b1', contentType: 'image/png', body: BYTES });
    assert.deepEqual(frame, {
      type: 'message',
      channel: '/ch',
      id: 'b1',
      contentType: 'image/png',
      data: BYTES.toString('base64'),
      encoding: 'base64',
    });
    assert.deepEqual(Buffer.from(frame.data, 'base64'), BYTES);
  });

  it('leaves out event when the message has none', () => {
    assert.equal('event' in messageFrame('/ch', text('x')), false);
  });
});

describe('encode-once caching', () => {
  it('sseEventBytes encodes a message object once and hands every subscriber the same bytes', () => {
    const message = text('shared', { event: 'e' });
    const first = sseEventBytes(message);
    assert.equal(first.toString('utf8'), encodeSseEvent(message));
    const again = sseEventBytes(message);
    assert.ok(again.buffer === first.buffer && again.byteOffset === first.byteOffset, 'the same bytes, not a new encoding');
    assert.equal(sseEventChunk(message), sseEventChunk(message), 'the same framed chunk');
    // Another message object (even an equal one) is encoded on its own.
    const twin = text('shared', { event: 'e' });
    assert.notEqual(sseEventChunk(twin), sseEventChunk(message));
    assert.deepEqual(sseEventBytes(twin), first);
  });

  it('sseEventChunk frames the event as one HTTP/1.1 chunk whose size is its UTF-8 byte length', () => {
    for (const message of [
      text('plain'),
      text('héllo ✓ 🐇\nsecond line', { event: 'greet', id: 'ü-1' }),
      text('', {}),
      { id: 'b', contentType: 'application/octet-stream', body: BYTES },
      text('x'.repeat(70_000)),
    ]) {
      const chunk = sseEventChunk(message);
      const head = chunk.indexOf('\r\n');
      const size = parseInt(chunk.subarray(0, head).toString('latin1'), 16);
      assert.match(chunk.subarray(0, head).toString('latin1'), /^[0-9a-f]+$/);
      assert.equal(size, Buffer.byteLength(encodeSseEvent(message), 'utf8'));
      assert.equal(chunk.length, head + 2 + size + 2, 'size line, data, CRLF: nothing else');
      assert.equal(chunk.subarray(head + 2, head + 2 + size).toString('utf8'), encodeSseEvent(message));
      assert.equal(chunk.subarray(chunk.length - 2).toString('latin1'), '\r\n');
      assert.equal(sseEventChunk(message), chunk, 'encoded once per message object');
      assert.equal(sseEventBytes(message).toString('utf8'), encodeSseEvent(message), 'the unframed bytes are the event');
    }
  });

  it('a copy made by spreading a message (a log giving it its event id) is encoded on its own', () => {
    const message = text('shared');
    const before = sseEventChunk(message).toString('utf8');
    const copy = { ...message, id: '7.0badc0de' };
    assert.match(sseEventChunk(copy).toString('utf8'), /id: 7\.0badc0de\n/);
    assert.equal(sseEventChunk(message).toString('utf8'), before, 'the original keeps its own');
    assert.deepEqual(Object.keys(message).sort(), ['body', 'contentType', 'id'], 'the cache is no enumerable field');
  });

  it('sseEventBytes does not cache a refused message', () => {
    const bad = text('x', { id: 'a\nb' });
    assert.throws(() => sseEventBytes(bad), /CR or LF/);
    assert.throws(() => sseEventBytes(bad), /CR or LF/);
  });

  it('messageFrameBytes encodes once per message and channel', () => {
    const message = text('payload');
    const a = messageFrameBytes('/a', message);
    assert.deepEqual(JSON.parse(a.toString('utf8')), messageFrame('/a', message));
    assert.equal(messageFrameBytes('/a', message), a, 'the same Buffer for the same channel');
    const b = messageFrameBytes('/b', message);
    assert.equal(JSON.parse(b.toString('utf8')).channel, '/b', 'never the bytes of another channel');
    assert.equal(JSON.parse(messageFrameBytes('/a', message).toString('utf8')).channel, '/a');
  });
});
