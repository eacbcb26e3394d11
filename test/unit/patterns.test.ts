import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isPattern, parseChannelPattern, parseClientFrame, patternMatches, tokenAllows, WarrenError } from '@warren/protocol';
import { WildcardRoutes } from '#gateway/wildcards.js';

const code = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    return err instanceof WarrenError ? err.code : String(err);
  }
  return 'none';
};

describe('wildcard patterns', () => {
  it('takes a channel then a last segment * or **, and nothing else', () => {
    assert.deepEqual(parseChannelPattern('/stocks/*'), { pattern: '/stocks/*', base: '/stocks', depth: 'one' });
    assert.deepEqual(parseChannelPattern('/stocks/eu/**'), { pattern: '/stocks/eu/**', base: '/stocks/eu', depth: 'any' });
    for (const bad of [
      '/st*',
      '/stocks/a*',
      '/stocks/*/x',
      '/stocks/***',
      '/*',
      '/**',
      'stocks/*',
      '/stocks//*',
      '/_warren/*',
      '/a/../*',
      7,
    ]) {
      assert.equal(
        code(() => parseChannelPattern(bad)),
        'INVALID_PATTERN',
        String(bad),
      );
    }
    assert.equal(isPattern('/stocks/*'), true);
    assert.equal(isPattern('/stocks'), false);
  });

  it('* matches one segment under its base, ** any depth; never the base itself nor a sibling prefix', () => {
    const one = parseChannelPattern('/stocks/*');
    const any = parseChannelPattern('/stocks/**');
    const cases: Array<[string, boolean, boolean]> = [
      ['/stocks/acme', true, true],
      ['/stocks/a.b', true, true],
      ['/stocks/eu/acme', false, true],
      ['/stocks', false, false],
      ['/stocksx/acme', false, false],
      ['/other/acme', false, false],
    ];
    for (const [channel, matchesOne, matchesAny] of cases) {
      assert.equal(patternMatches(one, channel), matchesOne, `${channel} against /stocks/*`);
      assert.equal(patternMatches(any, channel), matchesAny, `${channel} against /stocks/**`);
    }
  });

  it('a token covers a pattern only with a prefix grant holding every channel it matches', () => {
    const grants = { channels: ['/stocks/*', '/rooms/lobby', '/eu/de/*'] };
    assert.equal(tokenAllows(grants, '/stocks/*'), true);
    assert.equal(tokenAllows(grants, '/stocks/**'), true);
    assert.equal(tokenAllows(grants, '/stocks/eu/*'), true);
    assert.equal(tokenAllows(grants, '/other/*'), false);
    assert.equal(tokenAllows(grants, '/rooms/*'), false, 'an exact grant covers no pattern');
    assert.equal(tokenAllows(grants, '/eu/*'), false, 'a narrower prefix does not cover a wider pattern');
    assert.equal(tokenAllows(grants, '/stock*'), false, 'a malformed pattern is never allowed');
    assert.equal(tokenAllows({ channels: ['/stocks'] }, '/stocks/*'), false);
  });

  it('subscribe and unsubscribe frames take patterns; send and presence do not', () => {
    assert.deepEqual(parseClientFrame('{"type":"subscribe","channel":"/stocks/*"}'), { type: 'subscribe', channel: '/stocks/*' });
    assert.deepEqual(parseClientFrame('{"type":"unsubscribe","channel":"/stocks/**"}'), { type: 'unsubscribe', channel: '/stocks/**' });
    assert.equal(
      code(() => parseClientFrame('{"type":"subscribe","channel":"/st*"}')),
      'INVALID_PATTERN',
    );
    assert.equal(
      code(() => parseClientFrame('{"type":"send","channel":"/stocks/*","data":1}')),
      'INVALID_CHANNEL',
    );
  });

  it('the gateway serves patterns under its wildcard routes only', () => {
    const routes = new WildcardRoutes('/stocks/,/fx/');
    assert.equal(routes.parse('/stocks/*'), '/stocks/*');
    assert.equal(routes.parse('/fx/eu/**'), '/fx/eu/**');
    assert.equal(routes.parse('/other/x'), '/other/x', 'channels pass as channels');
    assert.equal(
      code(() => routes.parse('/other/*')),
      'WILDCARD_NOT_ALLOWED',
    );
    assert.equal(
      code(() => routes.parse('/stocks*')),
      'INVALID_PATTERN',
    );
    assert.equal(
      code(() => new WildcardRoutes(undefined).parse('/stocks/*')),
      'WILDCARD_NOT_ALLOWED',
    );
  });
});
