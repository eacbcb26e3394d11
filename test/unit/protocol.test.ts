import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  consumerQueueName,
  encodeMessage,
  fromWire,
  generateConsumerId,
  isChannel,
  parseChannel,
  parseConsumerId,
  toWireProperties,
  WarrenError,
} from '@warren/protocol';

describe('protocol rules', () => {
  it('accepts well-formed channels and refuses the rest', () => {
    for (const ok of ['/greetings', '/rooms/lobby', '/a-b_c.d~e', '/x/y/z', '/v1.2', `/${'a'.repeat(127)}`])
      assert.equal(parseChannel(ok), ok);
    for (const bad of [
      '',
      'greetings',
      '/',
      '//',
      '/a//b',
      '/a/',
      '/.',
      '/..',
      '/a/../b',
      '/a b',
      '/a#',
      '/a*',
      '/a%20',
      '/é',
      '/_x',
      `/${'a'.repeat(128)}`,
      42,
      null,
    ]) {
      assert.equal(isChannel(bad), false, JSON.stringify(bad));
      assert.throws(
        () => parseChannel(bad),
        (e: unknown) => e instanceof WarrenError && e.code === 'INVALID_CHANNEL' && e.status === 400,
      );
    }
  });

  it('checks consumer ids and generates valid unique ones', () => {
    const ids = new Set(Array.from({ length: 1000 }, generateConsumerId));
    assert.equal(ids.size, 1000);
    for (const id of ids) assert.equal(parseConsumerId(id), id);
    for (const bad of ['', 'a b', 'a.b', 'x'.repeat(65), 'ü']) assert.throws(() => parseConsumerId(bad), /invalid consumer id/);
  });

  it('encodes messages by type and round-trips them through AMQP properties', () => {
    const text = encodeMessage('hé');
    assert.equal(text.contentType, 'text/plain; charset=utf-8');
    assert.deepEqual(text.body, Buffer.from('hé'));
    assert.equal(encodeMessage(new Uint8Array([1, 2])).contentType, 'application/octet-stream');
    const json = encodeMessage({ a: 1 }, { event: 'tick', id: 'x-1' });
    assert.equal(json.contentType, 'application/json');
    const back = fromWire(json.body, toWireProperties(json));
    assert.equal(back.id, 'x-1');
    assert.equal(back.event, 'tick');
    assert.equal(back.contentType, 'application/json');
    assert.equal(toWireProperties(json).persistent, true);
    assert.throws(() => encodeMessage('x', { event: 'with\nnewline' }), /invalid event name/);
    assert.throws(() => encodeMessage('x', { id: 'with\r\nCRLF' }), /invalid message id/);
    assert.equal(consumerQueueName('c_1', '/greetings'), 'warren:c_1:/greetings');
  });
});
