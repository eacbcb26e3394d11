// The naming rules of packages/protocol/src/names.ts beyond what
// protocol.test.ts checks: message ids, event names, content types, the
// edges of channels and consumer ids, and the generated names.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  fanOutQueueName,
  generateConsumerId,
  generateMessageId,
  isContentType,
  isEventName,
  isMessageId,
  MAX_CONSUMER_ID_LENGTH,
  MAX_CONTENT_TYPE_LENGTH,
  MAX_EVENT_NAME_LENGTH,
  MAX_MESSAGE_ID_LENGTH,
  parseChannel,
  parseConsumerId,
  parseContentType,
  parseEventName,
  parseMessageId,
  WarrenError,
} from '@warren/protocol';

const refusedWith = (code: string) => (e: unknown) => e instanceof WarrenError && e.code === code && e.status === 400;

describe('channel rules at their edges', () => {
  it('reserves "_" only at the start of the first segment', () => {
    for (const ok of ['/a/_x', '/a_', '/~user/_private', '/-', '/.well', '/a/.b']) assert.equal(parseChannel(ok), ok);
    for (const bad of ['/_', '/_warren/publish', '/__x/y']) assert.throws(() => parseChannel(bad), /reserved/, bad);
  });

  it('says why a channel is refused', () => {
    assert.throws(() => parseChannel('/a/'), /empty segment/);
    assert.throws(() => parseChannel('/a/../b'), /"\." and "\.\." segments/);
    assert.throws(() => parseChannel('rooms'), /must start with "\/"/);
    assert.throws(() => parseChannel('/a:b'), /only A-Z a-z 0-9 _ ~ \. -/);
    assert.throws(() => parseChannel(`/${'a'.repeat(128)}`), /longer than 128 characters/);
  });

  it('refuses AMQP topic wildcards and percent-encoding', () => {
    for (const bad of ['/a/*', '/a/#', '/a%2Fb', '/a+b']) assert.throws(() => parseChannel(bad), refusedWith('INVALID_CHANNEL'), bad);
  });
});

describe('consumer id rules at their edges', () => {
  it('accepts 1 to 64 characters of A-Z a-z 0-9 _ -', () => {
    for (const ok of ['a', '-', '_', 'A-z_09', 'x'.repeat(MAX_CONSUMER_ID_LENGTH)]) assert.equal(parseConsumerId(ok), ok);
  });

  it('refuses the rest with INVALID_CONSUMER_ID', () => {
    for (const bad of ['x'.repeat(MAX_CONSUMER_ID_LENGTH + 1), 'a:b', 'a/b', 'a~b', 'a\n', 42, undefined]) {
      assert.throws(() => parseConsumerId(bad), refusedWith('INVALID_CONSUMER_ID'), JSON.stringify(bad));
    }
  });

  it('generates c_ and 22 URL-safe characters: a valid consumer id', () => {
    const id = generateConsumerId();
    assert.match(id, /^c_[A-Za-z0-9_-]{22}$/);
    assert.equal(parseConsumerId(id), id);
  });
});

describe('message id rules', () => {
  it('accepts 1 to 128 visible ASCII characters', () => {
    for (const ok of ['1', 'order-42:v3', '!~"#$%&\'()*+,./:;<=>?@[\\]^_`{|}', 'x'.repeat(MAX_MESSAGE_ID_LENGTH)]) {
      assert.equal(parseMessageId(ok), ok);
      assert.equal(isMessageId(ok), true);
    }
  });

  it('refuses spaces, line breaks, control and non-ASCII characters, empty and overlong ids', () => {
    for (const bad of ['', ' ', 'a b', 'a\nb', 'a\rb', 'a\tb', 'a\0b', 'a\x7fb', 'é', 'x'.repeat(MAX_MESSAGE_ID_LENGTH + 1), 1, null]) {
      assert.throws(() => parseMessageId(bad), refusedWith('INVALID_MESSAGE_ID'), JSON.stringify(bad));
      assert.equal(isMessageId(bad), false, JSON.stringify(bad));
    }
  });

  it('generates UUIDs, each new', () => {
    const a = generateMessageId();
    assert.match(a, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.notEqual(generateMessageId(), a);
    assert.equal(isMessageId(a), true);
  });
});

describe('event name rules', () => {
  it('accepts a letter, then letters, digits and _ . : -, up to 64 characters', () => {
    for (const ok of ['t', 'tick', 'user.joined', 'ns:event-2_b', `e${'x'.repeat(MAX_EVENT_NAME_LENGTH - 1)}`]) {
      assert.equal(parseEventName(ok), ok);
      assert.equal(isEventName(ok), true);
    }
  });

  it('refuses a name that does not start with a letter, holds other characters or is too long', () => {
    for (const bad of ['', '1st', '_x', '-x', 'a b', 'a\nb', 'a/b', 'é', `e${'x'.repeat(MAX_EVENT_NAME_LENGTH)}`, {}]) {
      assert.throws(() => parseEventName(bad), refusedWith('INVALID_EVENT_NAME'), JSON.stringify(bad));
      assert.equal(isEventName(bad), false, JSON.stringify(bad));
    }
  });
});

describe('content type rules', () => {
  it('accepts type/subtype with parameters, quoted or not', () => {
    for (const ok of [
      'text/plain',
      'application/vnd.api+json',
      'text/plain; charset=utf-8',
      'text/plain;charset=utf-8;format=flowed',
      'multipart/mixed; boundary="a b;c"',
    ]) {
      assert.equal(parseContentType(ok), ok);
      assert.equal(isContentType(ok), true);
    }
  });

  it('refuses a missing subtype, bad parameters, line breaks and overlong types', () => {
    const long = `application/${'x'.repeat(MAX_CONTENT_TYPE_LENGTH)}`;
    for (const bad of [
      '',
      'text',
      'text/',
      '/plain',
      'text plain',
      'text/plain;',
      'text/plain; charset',
      'text/plain\r\nX-Injected: 1',
      'text/plain; a="unterminated',
      long,
      7,
    ]) {
      assert.throws(() => parseContentType(bad), refusedWith('INVALID_CONTENT_TYPE'), JSON.stringify(bad));
      assert.equal(isContentType(bad), false, JSON.stringify(bad));
    }
  });
});

describe('queue names', () => {
  it('names the fan-out queue of a gateway and channel', () => {
    assert.equal(fanOutQueueName('gw1', '/rooms/lobby'), 'warren:fanout:gw1:/rooms/lobby');
  });
});
