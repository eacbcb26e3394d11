import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { normalizeOptions, OptionError, parseBytes, parseDuration } from '@warren/gateway';

describe('gateway options', () => {
  it('parses durations and sizes', () => {
    assert.equal(parseDuration('25s'), 25_000);
    assert.equal(parseDuration('25'), 25_000);
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('5m'), 300_000);
    assert.equal(parseDuration('1.5h'), 5_400_000);
    assert.throws(() => parseDuration('soon'), OptionError);
    assert.equal(parseBytes('64kb'), 65_536);
    assert.equal(parseBytes('1MB'), 1_048_576);
    assert.throws(() => parseBytes('-1'), OptionError);
  });

  it('fills defaults and refuses out-of-range or contradictory values by name', () => {
    const d = normalizeOptions();
    assert.equal(d.port, 4000);
    assert.equal(d.pollTimeoutMs, 25_000);
    assert.equal(d.amqpUrl, undefined);
    assert.throws(() => normalizeOptions({ port: 70_000 }), /port \(--port, WARREN_PORT\) must be between 0 and 65535/);
    assert.throws(() => normalizeOptions({ queueExpiresMs: 10 }), /--queue-expires/);
    assert.throws(() => normalizeOptions({ publishToken: 'short' }), /16 to 256/);
    assert.throws(() => normalizeOptions({ pollTimeoutMs: 60_000, maxPollTimeoutMs: 30_000 }), /exceeds maxPollTimeoutMs/);
    assert.throws(() => normalizeOptions({ amqpUrl: 'redis://x' }), /amqp:\/\/ or amqps:\/\//);
    assert.throws(() => normalizeOptions({ logLevel: 'loud' as never }), /one of debug/);
  });
});
