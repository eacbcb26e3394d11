// The rules of a route count (issue 16 item 2) that need no broker: how a
// listing's count is bounded by `routed`, and AMQP topic matching (for an
// exchange of type topic, should Warren's exchange become one).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { routeCountOf, RouteCounts, topicMatches } from '@warren/protocol';

describe('route counts', () => {
  it('routed wins over a listing: 0 when returned, at least 1 when routed', () => {
    assert.equal(routeCountOf(false, 0), 0);
    assert.equal(routeCountOf(false, 3), 0);
    assert.equal(routeCountOf(true, 0), 1);
    assert.equal(routeCountOf(true, 3), 3);
  });

  it('matches topic patterns as RabbitMQ does: * one word, # zero or more', () => {
    const cases: Array<[string, string, boolean]> = [
      ['a.b.c', 'a.b.c', true],
      ['a.b.c', 'a.b', false],
      ['a.*.c', 'a.b.c', true],
      ['a.*.c', 'a.c', false],
      ['a.*', 'a.b.c', false],
      ['a.#', 'a', true],
      ['a.#', 'a.b.c', true],
      ['#', '', true],
      ['#', 'a.b', true],
      ['#.c', 'a.b.c', true],
      ['#.c', 'a.b.d', false],
      ['a.#.c', 'a.c', true],
      ['a.#.c', 'a.x.y.c', true],
      ['*', 'a', true],
      ['*', 'a.b', false],
      ['*.#', '', false],
      ['', '', true],
      ['*', '', false],
      ['/stocks/ACME', '/stocks/ACME', true],
    ];
    for (const [pattern, key, expected] of cases) assert.equal(topicMatches(pattern, key), expected, `${pattern} ~ ${key}`);
  });

  it('refuses malformed settings with a TypeError naming what is wrong', () => {
    const base = { amqpUrl: 'amqp://localhost', exchange: 'warren' };
    assert.throws(() => new RouteCounts({ ...base, managementUrl: 'not a url' }), /management URL is not a URL/);
    assert.throws(() => new RouteCounts({ ...base, managementUrl: 'ftp://h' }), /must start with http:\/\/ or https:\/\//);
    assert.throws(() => new RouteCounts({ ...base, managementUrl: 'http://h', maxAgeMs: 0 }), /maxAgeMs/);
    assert.throws(() => new RouteCounts({ ...base, managementUrl: 'http://h', timeoutMs: 1.5 }), /timeoutMs/);
  });
});
