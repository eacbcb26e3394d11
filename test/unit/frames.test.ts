import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ClientFrameError,
  MAX_SEND_ID_LENGTH,
  parseClientFrame,
  parseHistory,
  parseServerFrame,
  parseSince,
  WarrenError,
  type ClientFrame,
  type ErrorCode,
  type ServerFrame,
} from '@warren/protocol';

const json = (value: unknown): string => JSON.stringify(value);
const LONG_ID = 'i'.repeat(MAX_SEND_ID_LENGTH);

/** Asserts that `text` is refused with `code`, and what the refusal echoes. */
function refused(text: string, code: ErrorCode, echo: { channel?: string; id?: string } = {}): void {
  assert.throws(
    () => parseClientFrame(text),
    (err: unknown) => {
      assert.ok(err instanceof ClientFrameError, `${text}: a ClientFrameError`);
      assert.ok(err instanceof WarrenError);
      assert.equal(err.code, code, text);
      assert.equal(err.status, 400);
      assert.equal(err.channel, echo.channel, `${text}: echoed channel`);
      assert.equal(err.id, echo.id, `${text}: echoed id`);
      return true;
    },
  );
}

describe('parseClientFrame', () => {
  it('reads every valid shape, keeping only the fields of its type', () => {
    const cases: Array<[unknown, ClientFrame]> = [
      [
        { type: 'subscribe', channel: '/a' },
        { type: 'subscribe', channel: '/a' },
      ],
      [
        { type: 'subscribe', channel: '/a/b', lastEventId: 'm-1' },
        { type: 'subscribe', channel: '/a/b', lastEventId: 'm-1' },
      ],
      [
        { type: 'subscribe', channel: '/a', lastEventId: 'x'.repeat(128), data: 1, id: 'r' },
        { type: 'subscribe', channel: '/a', lastEventId: 'x'.repeat(128) },
      ],
      [
        { type: 'unsubscribe', channel: '/a' },
        { type: 'unsubscribe', channel: '/a' },
      ],
      [
        { type: 'unsubscribe', channel: '/a', lastEventId: 'm-1' },
        { type: 'unsubscribe', channel: '/a' },
      ],
      [
        { type: 'send', channel: '/a', data: 'hi' },
        { type: 'send', channel: '/a', data: 'hi' },
      ],
      [
        { type: 'send', channel: '/a', data: { n: [1, true, null] }, id: 'r1' },
        { type: 'send', channel: '/a', data: { n: [1, true, null] }, id: 'r1' },
      ],
      [
        { type: 'send', channel: '/a', data: 0 },
        { type: 'send', channel: '/a', data: 0 },
      ],
      [
        { type: 'send', channel: '/a', data: false },
        { type: 'send', channel: '/a', data: false },
      ],
      [
        { type: 'send', channel: '/a', data: null },
        { type: 'send', channel: '/a', data: null },
      ],
      [
        { type: 'send', channel: '/a', data: [] },
        { type: 'send', channel: '/a', data: [] },
      ],
      [
        { type: 'send', channel: '/a' },
        { type: 'send', channel: '/a', data: null },
      ],
      [
        { type: 'send', channel: '/a', data: '', id: '' },
        { type: 'send', channel: '/a', data: '', id: '' },
      ],
      [
        { type: 'send', channel: '/a', data: 'x', id: LONG_ID, lastEventId: 'no' },
        { type: 'send', channel: '/a', data: 'x', id: LONG_ID },
      ],
    ];
    for (const [input, expected] of cases) assert.deepEqual(parseClientFrame(json(input)), expected, json(input));
  });

  it('refuses text that is not a JSON object with INVALID_FRAME, echoing nothing', () => {
    for (const text of [
      '',
      'not json',
      '{"type":"subscribe"',
      'null',
      '42',
      '"subscribe"',
      'true',
      '[]',
      json([{ type: 'subscribe', channel: '/a' }]),
    ]) {
      refused(text, 'INVALID_FRAME');
    }
  });

  it('refuses a missing or unknown type with INVALID_FRAME, echoing a string channel', () => {
    refused(json({}), 'INVALID_FRAME');
    refused(json({ channel: '/a' }), 'INVALID_FRAME', { channel: '/a' });
    refused(json({ type: 'message', channel: '/a', id: 'm', data: 'x' }), 'INVALID_FRAME', { channel: '/a' });
    refused(json({ type: 'Subscribe', channel: '/a' }), 'INVALID_FRAME', { channel: '/a' });
    refused(json({ type: ['subscribe'], channel: 5 }), 'INVALID_FRAME');
    // An id is echoed for a send only.
    refused(json({ type: 'reply', channel: '/a', id: 'r1' }), 'INVALID_FRAME', { channel: '/a' });
  });

  it('refuses a channel that breaks the channel rules with INVALID_CHANNEL, for every type', () => {
    for (const type of ['subscribe', 'unsubscribe', 'send']) {
      refused(json({ type }), 'INVALID_CHANNEL');
      refused(json({ type, channel: 7 }), 'INVALID_CHANNEL');
      for (const channel of ['', 'a', '/', '/a/', '/a//b', '/a/../b', '/./a', '/_warren/ws', '/a b', `/${'c'.repeat(128)}`]) {
        refused(json({ type, channel, data: 'x' }), 'INVALID_CHANNEL', { channel });
      }
      // A `*` asks for a wildcard pattern, which subscribe and unsubscribe take (docs/wildcards.md), and send does not.
      refused(json({ type, channel: '/a*', data: 'x' }), type === 'send' ? 'INVALID_CHANNEL' : 'INVALID_PATTERN', { channel: '/a*' });
    }
    assert.deepEqual(parseClientFrame(json({ type: 'subscribe', channel: `/${'c'.repeat(127)}` })), {
      type: 'subscribe',
      channel: `/${'c'.repeat(127)}`,
    });
  });

  it('refuses a lastEventId that is not a message id with INVALID_MESSAGE_ID', () => {
    for (const lastEventId of ['', 'has space', 'line\nbreak', 'é', 'x'.repeat(129), null, 5, {}]) {
      refused(json({ type: 'subscribe', channel: '/a', lastEventId }), 'INVALID_MESSAGE_ID', { channel: '/a' });
    }
  });

  it('refuses a send id that is not a string of at most 128 characters with INVALID_FRAME, before the channel', () => {
    for (const id of [null, 5, true, ['r1'], { id: 'r1' }, 'i'.repeat(MAX_SEND_ID_LENGTH + 1)]) {
      refused(json({ type: 'send', channel: '/a', data: 'x', id }), 'INVALID_FRAME', { channel: '/a' });
      refused(json({ type: 'send', channel: '/a/../b', data: 'x', id }), 'INVALID_FRAME', { channel: '/a/../b' });
    }
    // A usable id is echoed when the channel is what is wrong.
    refused(json({ type: 'send', channel: '/_x', data: 'x', id: 'r9' }), 'INVALID_CHANNEL', { channel: '/_x', id: 'r9' });
    refused(json({ type: 'send', data: 'x', id: LONG_ID }), 'INVALID_CHANNEL', { id: LONG_ID });
  });

  it('reads presence requests and the presence flag of a subscribe', () => {
    assert.deepEqual(parseClientFrame(json({ type: 'presence', channel: '/rooms/a', id: 'p1', extra: 1 })), {
      type: 'presence',
      channel: '/rooms/a',
      id: 'p1',
    });
    assert.deepEqual(parseClientFrame(json({ type: 'presence', channel: '/rooms/a' })), { type: 'presence', channel: '/rooms/a' });
    assert.deepEqual(parseClientFrame(json({ type: 'subscribe', channel: '/rooms/a', presence: true })), {
      type: 'subscribe',
      channel: '/rooms/a',
      presence: true,
    });
    const refused = (frame: unknown): { code: string; id: string | undefined; channel: string | undefined } => {
      try {
        parseClientFrame(json(frame));
      } catch (err) {
        const e = err as ClientFrameError;
        return { code: e.code, id: e.id, channel: e.channel };
      }
      return assert.fail('accepted');
    };
    assert.deepEqual(refused({ type: 'subscribe', channel: '/a', presence: 'yes' }), {
      code: 'INVALID_REQUEST',
      id: undefined,
      channel: '/a',
    });
    assert.deepEqual(refused({ type: 'presence', channel: '/a', id: 7 }), { code: 'INVALID_FRAME', id: undefined, channel: '/a' });
    assert.deepEqual(refused({ type: 'presence', channel: 'a', id: 'p2' }), { code: 'INVALID_CHANNEL', id: 'p2', channel: 'a' });
  });

  it('keeps the messages the gateway has always answered with', () => {
    const message = (text: string): string => {
      try {
        parseClientFrame(text);
      } catch (err) {
        return (err as Error).message;
      }
      return assert.fail(`${text} was accepted`);
    };
    assert.equal(message('nope'), 'a warren.v1 frame is a JSON object with a "type"');
    // The list of types grows with the protocol (presence was added); the code stays INVALID_FRAME.
    assert.equal(message(json({ type: 'publish', channel: '/a' })), 'type must be subscribe, unsubscribe, send or presence');
    assert.equal(message(json({ type: 'send', channel: '/a', id: 1 })), 'a send id is a string of at most 128 characters');
    assert.match(message(json({ type: 'subscribe', channel: '/a/../b' })), /^invalid channel: /);
    assert.match(message(json({ type: 'subscribe', channel: '/a', lastEventId: '' })), /^invalid message id: /);
  });
});

describe('parseServerFrame', () => {
  it('reads every server frame type, dropping fields its type does not have', () => {
    const cases: ServerFrame[] = [
      { type: 'message', channel: '/a', id: 'm-1', contentType: 'text/plain', data: 'hi' },
      {
        type: 'message',
        channel: '/a',
        id: 'm-2',
        contentType: 'application/octet-stream',
        data: 'AAE=',
        event: 'note',
        encoding: 'base64',
      },
      { type: 'subscribed', channel: '/a' },
      { type: 'unsubscribed', channel: '/a' },
      { type: 'reply', channel: '/a', status: 204 },
      { type: 'reply', id: 'r1', channel: '/a', status: 200, contentType: 'image/png', data: 'AAE=', encoding: 'base64' },
      { type: 'error', code: 'INVALID_FRAME', message: 'no' },
      { type: 'error', id: 'r1', code: 'SOMETHING_NEW', message: 'later codes are read too', channel: '/a' },
    ];
    for (const frame of cases) assert.deepEqual(parseServerFrame(json(frame)), frame);
    assert.deepEqual(parseServerFrame(json({ type: 'subscribed', channel: '/a', extra: 1 })), { type: 'subscribed', channel: '/a' });
  });

  it('refuses anything else with INVALID_FRAME', () => {
    const bad: unknown[] = [
      null,
      [],
      'message',
      {},
      { type: 'subscribe', channel: '/a' },
      { type: 'later', channel: '/a' },
      { type: 'message', channel: '/a', id: 'm', data: 'x' },
      { type: 'message', channel: '/a', id: 'm', contentType: 'text/plain', data: { x: 1 } },
      { type: 'message', channel: '/a', id: 'm', contentType: 'text/plain', data: 'x', encoding: 'hex' },
      { type: 'message', channel: '/a', id: 7, contentType: 'text/plain', data: 'x' },
      { type: 'subscribed' },
      { type: 'unsubscribed', channel: null },
      { type: 'reply', channel: '/a' },
      { type: 'reply', channel: '/a', status: '200' },
      { type: 'reply', channel: '/a', status: 200.5 },
      { type: 'reply', channel: '/a', status: 99 },
      { type: 'error', message: 'no code' },
      { type: 'error', code: 'X', message: 'm', channel: 1 },
    ];
    for (const value of bad) {
      assert.throws(
        () => parseServerFrame(json(value)),
        (err: unknown) => err instanceof WarrenError && err.code === 'INVALID_FRAME',
        json(value),
      );
    }
    assert.throws(
      () => parseServerFrame('{'),
      (err: unknown) => err instanceof WarrenError && err.code === 'INVALID_FRAME',
    );
  });
});

describe('subscribe since and history', () => {
  it('reads since as an event id, epoch milliseconds or an ISO time', () => {
    assert.deepEqual(parseSince('41.0badc0de'), { id: '41.0badc0de' });
    assert.deepEqual(parseSince('m-41'), { id: 'm-41' });
    assert.deepEqual(parseSince('1764684000000'), { time: 1764684000000 });
    assert.deepEqual(parseSince('2026-12-02T14:00:00Z'), { time: Date.UTC(2026, 11, 2, 14) });
    assert.throws(() => parseSince('2026-13-45'), { code: 'INVALID_REQUEST' });
    assert.throws(() => parseSince(''), { code: 'INVALID_MESSAGE_ID' });
    assert.throws(() => parseSince(7), { code: 'INVALID_MESSAGE_ID' });
  });

  it('reads history as a whole number from 0 to 1000, as JSON or query text', () => {
    assert.equal(parseHistory(0), 0);
    assert.equal(parseHistory('1000'), 1000);
    for (const bad of [1001, -1, 2.5, '12a', '', null, '1001'])
      assert.throws(() => parseHistory(bad), { code: 'INVALID_REQUEST' }, String(bad));
  });

  it('keeps since, history and lastEventId of a subscribe frame', () => {
    assert.deepEqual(
      parseClientFrame(json({ type: 'subscribe', channel: '/a', since: '2026-12-02T14:00:00Z', history: 5, lastEventId: 'm-1' })),
      {
        type: 'subscribe',
        channel: '/a',
        since: '2026-12-02T14:00:00Z',
        history: 5,
        lastEventId: 'm-1',
      },
    );
    refused(json({ type: 'subscribe', channel: '/a', history: '5' }), 'INVALID_REQUEST', { channel: '/a' });
    refused(json({ type: 'subscribe', channel: '/a', since: 5 }), 'INVALID_MESSAGE_ID', { channel: '/a' });
  });
});
