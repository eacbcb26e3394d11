import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WarrenClientError } from '@warren/client';
import * as client from '@warren/client/internal';
import * as protocol from '@warren/protocol';
import { CLIENT_FRAMES, SERVER_FRAMES, WarrenError } from '@warren/protocol';

// The browser client keeps dependency-free copies of the warren.v1 frame
// types, of the server-frame parser and of isTextual. These tests fail when a
// copy drifts from @warren/protocol.

/** `true` only when A and B are the same type (not merely assignable). */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const same = <T extends true>(): T | undefined => undefined;

// Compile time: each frame type, and the unions, the same in both packages.
same<Equal<client.ClientFrame, protocol.ClientFrame>>();
same<Equal<client.SubscribeFrame, protocol.SubscribeFrame>>();
same<Equal<client.UnsubscribeFrame, protocol.UnsubscribeFrame>>();
same<Equal<client.SendFrame, protocol.SendFrame>>();
same<Equal<client.JsonValue, protocol.JsonValue>>();
same<Equal<client.ServerFrame, protocol.ServerFrame>>();
same<Equal<client.MessageFrame, protocol.MessageFrame>>();
same<Equal<client.SubscribedFrame, protocol.SubscribedFrame>>();
same<Equal<client.UnsubscribedFrame, protocol.UnsubscribedFrame>>();
same<Equal<client.ReplyFrame, protocol.ReplyFrame>>();
same<Equal<client.ErrorFrame, protocol.ErrorFrame>>();
same<Equal<client.PresenceRequestFrame, protocol.PresenceRequestFrame>>();
same<Equal<client.PresenceFrame, protocol.PresenceFrame>>();
same<Equal<client.JoinFrame, protocol.JoinFrame>>();
same<Equal<client.LeaveFrame, protocol.LeaveFrame>>();
// And assignable both ways (what one side writes, the other reads).
export const toProtocol = (f: client.ServerFrame): protocol.ServerFrame => f;
export const toClient = (f: protocol.ServerFrame): client.ServerFrame => f;
export const clientToProtocol = (f: client.ClientFrame): protocol.ClientFrame => f;
export const protocolToClient = (f: protocol.ClientFrame): client.ClientFrame => f;
// Equal tells apart what the copies could get wrong: a missing field, an optional one made required, a widened literal.
// @ts-expect-error a reply frame without `encoding` is another type
same<Equal<Omit<protocol.ReplyFrame, 'encoding'>, protocol.ReplyFrame>>();
// @ts-expect-error `contentType` required is another type
same<Equal<protocol.ReplyFrame & { contentType: string }, protocol.ReplyFrame>>();
// @ts-expect-error `encoding: string` is another type
same<Equal<Omit<protocol.MessageFrame, 'encoding'> & { encoding?: string }, protocol.MessageFrame>>();
// @ts-expect-error a union with one member less is another type
same<Equal<Exclude<protocol.ServerFrame, protocol.ReplyFrame>, protocol.ServerFrame>>();

/** A value of the right kind for each server frame field. */
const GOOD: Record<string, unknown> = {
  channel: '/a/b',
  pattern: '/a/*',
  id: 'm-1',
  event: 'note',
  contentType: 'application/octet-stream',
  data: 'AAEC',
  encoding: 'base64',
  status: 200,
  code: 'BROKER_UNAVAILABLE',
  message: 'the broker is away',
  reason: 'history-gone',
  identity: 'alice',
  members: [{ identity: 'alice', connections: 2, since: '2026-12-02T14:00:00.000Z' }],
};
/** Values each field must refuse. */
const BAD: Record<string, unknown[]> = {
  status: ['200', 99, 600, 200.5, null, true],
  encoding: ['hex', 'BASE64', 64, null],
  members: ['alice', null, {}, [null], [{ identity: 'a', connections: -1, since: 'x' }], [{ identity: 7, connections: 1, since: 'x' }]],
};
const BAD_STRING = [42, null, true, {}, ['x']];

type Outcome = { ok: true; frame: unknown } | { ok: false; code: string } | { ok: true; frame: undefined };

function viaProtocol(text: string): Outcome {
  try {
    return { ok: true, frame: protocol.parseServerFrame(text) };
  } catch (err) {
    assert.ok(err instanceof WarrenError, `${text}: a WarrenError`);
    return { ok: false, code: err.code };
  }
}

function viaClient(text: string): Outcome {
  try {
    return { ok: true, frame: client.parseServerFrame(text) };
  } catch (err) {
    assert.ok(err instanceof WarrenClientError, `${text}: a WarrenClientError`);
    return { ok: false, code: err.code };
  }
}

/** Every server frame type with each field given (all, only the required ones, all but one optional). */
function validFrames(): Array<Record<string, unknown>> {
  const frames: Array<Record<string, unknown>> = [];
  for (const [type, fields] of Object.entries(SERVER_FRAMES)) {
    const names = Object.keys(fields);
    const full: Record<string, unknown> = { type };
    for (const name of names) full[name] = GOOD[name];
    frames.push(full);
    frames.push(
      Object.fromEntries(
        Object.entries(full).filter(([name]) => name === 'type' || (fields as Record<string, string>)[name] === 'required'),
      ),
    );
    for (const name of names) {
      if ((fields as Record<string, string>)[name] === 'optional')
        frames.push(Object.fromEntries(Object.entries(full).filter(([n]) => n !== name)));
    }
  }
  return frames;
}

describe('the client and @warren/protocol read server frames alike', () => {
  it('both read every valid frame of every type to the same value', () => {
    const frames = validFrames();
    assert.ok(frames.length > Object.keys(SERVER_FRAMES).length * 2);
    for (const frame of frames) {
      const text = JSON.stringify({ ...frame, unknownField: 1 });
      const expected = { ok: true, frame };
      assert.deepEqual(viaProtocol(text), expected, text);
      assert.deepEqual(viaClient(text), expected, text);
    }
  });

  it('both refuse, with INVALID_FRAME, a frame missing a required field or with a mistyped one', () => {
    let refusals = 0;
    for (const [type, fields] of Object.entries(SERVER_FRAMES)) {
      const full: Record<string, unknown> = { type };
      for (const name of Object.keys(fields)) full[name] = GOOD[name];
      for (const [name, presence] of Object.entries(fields as Record<string, string>)) {
        const variants: unknown[] = [...(BAD[name] ?? BAD_STRING)];
        if (presence === 'required') variants.push(undefined);
        for (const value of variants) {
          const text = JSON.stringify({ ...full, [name]: value });
          assert.deepEqual(viaProtocol(text), { ok: false, code: 'INVALID_FRAME' }, `protocol: ${text}`);
          assert.deepEqual(viaClient(text), { ok: false, code: 'INVALID_FRAME' }, `client: ${text}`);
          refusals++;
        }
      }
    }
    assert.ok(refusals > 40);
    for (const text of ['', 'x', '{', 'null', '7', '"message"', '[]', JSON.stringify([{ type: 'subscribed', channel: '/a' }])]) {
      assert.deepEqual(viaProtocol(text), { ok: false, code: 'INVALID_FRAME' }, text);
      assert.deepEqual(viaClient(text), { ok: false, code: 'INVALID_FRAME' }, text);
    }
  });

  it('differ in one place: a type the client does not know is ignored by it, refused by the protocol', () => {
    for (const frame of [{}, { type: 'welcome', channel: '/a' }, { type: 7 }, { type: 'subscribe', channel: '/a' }]) {
      const text = JSON.stringify(frame);
      assert.deepEqual(viaProtocol(text), { ok: false, code: 'INVALID_FRAME' }, text);
      assert.deepEqual(viaClient(text), { ok: true, frame: undefined }, text);
    }
  });

  it('client frames as the client writes them are what parseClientFrame reads', () => {
    const written: client.ClientFrame[] = [
      { type: 'subscribe', channel: '/a' },
      { type: 'subscribe', channel: '/a', lastEventId: 'm-1' },
      { type: 'unsubscribe', channel: '/a' },
      { type: 'send', channel: '/a', data: { x: [1, 'two', null] }, id: 'r1' },
      { type: 'presence', channel: '/a', id: 'p1' },
    ];
    const types = new Set(written.map((f) => f.type));
    assert.deepEqual([...types].sort(), Object.keys(CLIENT_FRAMES).sort(), 'one frame of each client type');
    for (const frame of written) assert.deepEqual(protocol.parseClientFrame(JSON.stringify(frame)), frame);
  });
});

describe("the client's isTextual and the protocol's", () => {
  it('agree on every content type', () => {
    const types = [
      'text/plain',
      'text/plain; charset=utf-8',
      'TEXT/HTML',
      ' text/csv ;q=1',
      'application/json',
      'Application/JSON; charset=utf-8',
      'application/ld+json',
      'application/problem+json',
      'application/xml',
      'image/svg+xml',
      'application/javascript',
      'application/x-www-form-urlencoded',
      'application/octet-stream',
      'image/png',
      'application/pdf',
      'application/jsonx',
      'application/json-seq',
      'multipart/form-data; boundary=x',
      'application/x-javascript',
      'textual/plain',
      '',
      ';text/plain',
    ];
    const answers = types.map((type) => [type, protocol.isTextual(type)] as const);
    assert.ok(answers.some(([, textual]) => textual) && answers.some(([, textual]) => !textual), 'both answers are exercised');
    for (const [type, textual] of answers) assert.equal(client.isTextual(type), textual, type);
  });
});
