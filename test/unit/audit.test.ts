// The audit's wire helpers and query parsing (docs/audit.md), without a broker.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  auditExchangeName,
  auditInboxName,
  auditLogName,
  consumerQueueArguments,
  consumerQueueName,
  deathFromHeaders,
  deathHeaders,
  parseConsumerQueueName,
  WarrenError,
} from '@warren/protocol';
import { parseMissedQuery } from '@warren/gateway';

describe('audit wire layout', () => {
  it('names the audit after the exchange', () => {
    assert.equal(auditExchangeName(), 'warren.audit');
    assert.equal(auditExchangeName('shop'), 'shop.audit');
    assert.equal(auditInboxName(), 'warren:audit-inbox');
    assert.equal(auditInboxName('shop'), 'warren:audit-inbox:shop');
    assert.equal(auditLogName(), 'warren:audit');
    assert.equal(auditLogName('shop'), 'warren:audit:shop');
  });

  it('adds x-dead-letter-exchange only when asked', () => {
    const limits = { expiresMs: 1000, maxLength: 5 };
    assert.equal('x-dead-letter-exchange' in consumerQueueArguments(limits), false);
    assert.equal(consumerQueueArguments({ ...limits, deadLetterExchange: 'warren.audit' })['x-dead-letter-exchange'], 'warren.audit');
    const quorum = consumerQueueArguments({ ...limits, queueType: 'quorum', deadLetterExchange: 'warren.audit' });
    assert.equal(quorum['x-dead-letter-exchange'], 'warren.audit');
    assert.equal(quorum['x-queue-type'], 'quorum');
  });

  it('reads the consumer and channel back from a consumer queue name', () => {
    assert.deepEqual(parseConsumerQueueName(consumerQueueName('user-42', '/orders/42')), { consumerId: 'user-42', channel: '/orders/42' });
    assert.equal(parseConsumerQueueName('warren:audit-inbox'), undefined);
    assert.equal(parseConsumerQueueName('warren:log:0'), undefined);
    assert.equal(parseConsumerQueueName('other:user:/a'), undefined);
  });

  it("reads RabbitMQ's x-first-death-* and x-death, and the gateway's own headers", () => {
    const rabbit = {
      'x-first-death-reason': 'maxlen',
      'x-first-death-queue': 'warren:u1:/orders/1',
      'x-first-death-exchange': 'warren',
      'x-death': [
        {
          count: 1,
          reason: 'maxlen',
          queue: 'warren:u1:/orders/1',
          time: { '!': 'timestamp', value: 1_796_229_399 },
          exchange: 'warren',
          'routing-keys': ['/orders/1'],
        },
      ],
    };
    const death = deathFromHeaders(rabbit, 'ignored');
    assert.deepEqual(death, { queue: 'warren:u1:/orders/1', reason: 'maxlen', time: 1_796_229_399_000, channel: '/orders/1' });
    assert.deepEqual(deathFromHeaders(deathHeaders(death!), 'warren:audit'), death);
    assert.equal(deathFromHeaders(undefined, '/a'), undefined);
    assert.equal(deathFromHeaders({ other: 1 }, '/a'), undefined);
    assert.equal(deathFromHeaders({ 'x-first-death-reason': 'bogus', 'x-first-death-queue': 'q' }, '/a'), undefined);
  });
});

describe('GET /_warren/missed query', () => {
  const q = (s: string) => parseMissedQuery(new URLSearchParams(s));
  const code = (s: string): string | undefined => {
    try {
      q(s);
      return undefined;
    } catch (err) {
      return (err as WarrenError).code;
    }
  };

  it('takes consumer, channel, after, since and limit', () => {
    assert.deepEqual(q(''), { consumerId: undefined, channel: undefined, limit: 100 });
    assert.deepEqual(q('consumer=u1&channel=/orders/1&limit=7&after=12&since=2026-12-02T00:00:00Z'), {
      consumerId: 'u1',
      channel: '/orders/1',
      limit: 7,
      after: 12,
      since: Date.parse('2026-12-02T00:00:00Z'),
    });
    assert.equal(q('since=1700000000000').since, 1_700_000_000_000);
  });

  it('refuses bad values with a stable code', () => {
    assert.equal(code('limit=0'), 'INVALID_REQUEST');
    assert.equal(code('limit=1001'), 'INVALID_REQUEST');
    assert.equal(code('limit=abc'), 'INVALID_REQUEST');
    assert.equal(code('after=-1'), 'INVALID_REQUEST');
    assert.equal(code('since=yesterday'), 'INVALID_REQUEST');
    assert.equal(code('consumer=a&consumer=b'), 'INVALID_REQUEST');
    assert.equal(code('consumer=a:b'), 'INVALID_CONSUMER_ID');
    assert.equal(code('channel=orders'), 'INVALID_CHANNEL');
  });
});
