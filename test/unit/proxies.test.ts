// --trusted-proxies and the client address behind them (packages/gateway/src/proxies.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseProxies, plainAddress, TrustedProxies } from '#gateway/proxies.js';

describe('parseProxies', () => {
  it('reads addresses and CIDR ranges of both families, comma-separated, spaces and empty entries ignored', () => {
    assert.deepEqual(parseProxies(' 10.0.0.0/8, ::1/128 ,,192.168.1.10, [fd00::1], fd00::/8 '), [
      { address: '10.0.0.0', prefix: 8, family: 'ipv4' },
      { address: '::1', prefix: 128, family: 'ipv6' },
      { address: '192.168.1.10', prefix: undefined, family: 'ipv4' },
      { address: 'fd00::1', prefix: undefined, family: 'ipv6' },
      { address: 'fd00::', prefix: 8, family: 'ipv6' },
    ]);
    assert.deepEqual(parseProxies(''), []);
    assert.deepEqual(parseProxies(' , '), []);
  });

  it('takes an IPv4-mapped IPv6 address as IPv4', () => {
    assert.deepEqual(parseProxies('::ffff:10.1.2.3'), [{ address: '10.1.2.3', prefix: undefined, family: 'ipv4' }]);
  });

  it("accepts prefixes up to the family's width, from 0", () => {
    assert.equal(parseProxies('0.0.0.0/0')[0]!.prefix, 0);
    assert.equal(parseProxies('10.0.0.1/32')[0]!.prefix, 32);
    assert.equal(parseProxies('::/128')[0]!.prefix, 128);
  });

  it('refuses an entry that is neither an address nor a range, and names it', () => {
    for (const bad of [
      'proxy.internal',
      '10.0.0.0/33',
      'fd00::/129',
      '10.0.0.0/',
      '10.0.0.0/8x',
      '10.0.0.0/-1',
      '10.0.0',
      '10.0.0.0/8/8',
      '*',
    ]) {
      assert.throws(
        () => parseProxies(`127.0.0.1, ${bad}`),
        (e: unknown) =>
          e instanceof Error && e.message.startsWith(`has ${JSON.stringify(bad)}, which is neither an IP address nor a CIDR range`),
        bad,
      );
    }
  });
});

describe('plainAddress', () => {
  it('unwraps IPv4-mapped IPv6 and bracketed IPv6, and leaves the rest alone', () => {
    assert.equal(plainAddress('::ffff:127.0.0.1'), '127.0.0.1');
    assert.equal(plainAddress('::FFFF:10.0.0.1'), '10.0.0.1');
    assert.equal(plainAddress('[::1]'), '::1');
    assert.equal(plainAddress('[::ffff:10.0.0.1]'), '10.0.0.1');
    assert.equal(plainAddress('2001:db8::1'), '2001:db8::1');
    assert.equal(plainAddress('10.0.0.1'), '10.0.0.1');
  });
});

describe('TrustedProxies', () => {
  it('trusts nobody without a setting', () => {
    for (const setting of [undefined, '']) {
      const proxies = new TrustedProxies(setting);
      assert.equal(proxies.has('127.0.0.1'), false);
      assert.equal(proxies.clientAddress('127.0.0.1', '203.0.113.7'), '127.0.0.1', 'X-Forwarded-For from an untrusted peer is ignored');
    }
  });

  it('trusts the listed addresses and ranges, in either spelling of an IPv4 address', () => {
    const proxies = new TrustedProxies('10.0.0.0/8, 192.168.1.10, fd00::/8');
    assert.equal(proxies.has('10.200.3.4'), true);
    assert.equal(proxies.has('::ffff:10.200.3.4'), true);
    assert.equal(proxies.has('11.0.0.1'), false);
    assert.equal(proxies.has('192.168.1.10'), true);
    assert.equal(proxies.has('192.168.1.11'), false);
    assert.equal(proxies.has('fd12:3456::1'), true);
    assert.equal(proxies.has('[fd12:3456::1]'), true);
    assert.equal(proxies.has('fe80::1'), false);
    assert.equal(proxies.has('not an address'), false);
  });

  it('takes the peer as the client when it is not a trusted proxy', () => {
    const proxies = new TrustedProxies('10.0.0.0/8');
    assert.equal(proxies.clientAddress('203.0.113.9', '1.2.3.4'), '203.0.113.9');
    assert.equal(proxies.clientAddress('::ffff:203.0.113.9', undefined), '203.0.113.9');
  });

  it('behind trusted proxies, takes the right-most X-Forwarded-For hop that is not one of them', () => {
    const proxies = new TrustedProxies('10.0.0.0/8, ::1');
    // The client wrote "6.6.6.6" itself; 203.0.113.7 is what the first trusted proxy saw.
    assert.equal(proxies.clientAddress('10.0.0.2', '6.6.6.6, 203.0.113.7, 10.0.0.1'), '203.0.113.7');
    assert.equal(proxies.clientAddress('::1', ' 203.0.113.7 ,10.9.9.9'), '203.0.113.7');
    assert.equal(proxies.clientAddress('10.0.0.2', '[2001:db8::7]'), '2001:db8::7');
    assert.equal(proxies.clientAddress('10.0.0.2', '::ffff:203.0.113.8'), '203.0.113.8');
  });

  it('takes the left-most hop when every hop is a trusted proxy, and the peer when the header is empty', () => {
    const proxies = new TrustedProxies('10.0.0.0/8');
    assert.equal(proxies.clientAddress('10.0.0.2', '10.0.0.5, 10.0.0.4'), '10.0.0.5');
    assert.equal(proxies.clientAddress('10.0.0.2', ''), '10.0.0.2');
    assert.equal(proxies.clientAddress('10.0.0.2', ' , '), '10.0.0.2');
    assert.equal(proxies.clientAddress('10.0.0.2', undefined), '10.0.0.2');
  });

  it('counts a hop with a port by its address, and stops at a hop that is no address', () => {
    const proxies = new TrustedProxies('10.0.0.0/8');
    // Some proxies write the client's port: every connection must not get a bucket of its own.
    assert.equal(proxies.clientAddress('10.0.0.2', '203.0.113.7:5555'), '203.0.113.7');
    assert.equal(proxies.clientAddress('10.0.0.2', '[2001:db8::1]:443, 10.0.0.3'), '2001:db8::1');
    // A word is not a bucket the client may choose: the trusted hop right of it counts.
    assert.equal(proxies.clientAddress('10.0.0.2', 'unknown, 10.0.0.3'), '10.0.0.3');
    assert.equal(proxies.clientAddress('10.0.0.2', 'anything-i-like'), '10.0.0.2');
  });

  it('refuses a bad setting with the entry named', () => {
    assert.throws(() => new TrustedProxies('10.0.0.0/8, 10.0.0.300'), /"10\.0\.0\.300"/);
  });
});
