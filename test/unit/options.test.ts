import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  normalizeOptions,
  OPTION_SPECS,
  OptionError,
  parseBytes,
  parseDuration,
  parseOptionText,
  showDuration,
  type GatewayOptions,
} from '@warren/gateway';

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
    assert.throws(() => normalizeOptions({ port: 70_000 }), /--port \/ WARREN_PORT \/ port must be between 0 and 65535/);
    assert.throws(() => normalizeOptions({ queueExpiresMs: 10 }), /--queue-expires/);
    assert.throws(() => normalizeOptions({ publishToken: 'short' }), /16 to 256/);
    assert.throws(
      () => normalizeOptions({ pollTimeoutMs: 60_000, maxPollTimeoutMs: 30_000 }),
      /exceeds --max-poll-timeout \/ WARREN_MAX_POLL_TIMEOUT \/ maxPollTimeoutMs/,
    );
    assert.throws(() => normalizeOptions({ amqpUrl: 'redis://x' }), /amqp:\/\/ or amqps:\/\//);
    assert.throws(() => normalizeOptions({ logLevel: 'loud' as never }), /one of debug/);
  });
});

describe('gateway options: defaults', () => {
  it('fills every option that has a default with it, and leaves the others unset', () => {
    const d = normalizeOptions() as unknown as Record<string, unknown>;
    for (const spec of OPTION_SPECS) assert.equal(d[spec.key], spec.default, spec.key);
  });

  it('takes an empty string as unset', () => {
    assert.equal(normalizeOptions({ exchange: '' }).exchange, 'warren');
    assert.equal(normalizeOptions({ host: '' }).host, undefined);
  });

  it('keeps a given logger, which is not an option with a flag', () => {
    const logger = { debug() {}, info() {}, warn() {}, error() {} } as never;
    assert.equal(normalizeOptions({ logger }).logger, logger);
  });
});

describe('gateway options: durations and sizes', () => {
  it('reads every duration unit, fractions and spaces', () => {
    const cases: Array<[string, number]> = [
      ['0', 0],
      ['1500ms', 1500],
      ['1.5s', 1500],
      [' 2 s ', 2000],
      ['2m', 120_000],
      ['1h', 3_600_000],
      ['1d', 86_400_000],
      ['0.0004s', 0],
    ];
    for (const [text, ms] of cases) assert.equal(parseDuration(text), ms, text);
  });

  it('refuses what is not a duration, saying what is', () => {
    for (const text of ['', 's', '-1s', '1e3', '.5s', '5 minutes', '5M', '1s2']) {
      assert.throws(
        () => parseDuration(text),
        (e: unknown) => e instanceof OptionError && e.message.includes(JSON.stringify(text)) && /500ms, 25s, 5m/.test(e.message),
        JSON.stringify(text),
      );
    }
  });

  it('reads sizes in binary multiples, in any case', () => {
    const cases: Array<[string, number]> = [
      ['0', 0],
      ['512b', 512],
      ['64KiB', 65_536],
      ['2 kb', 2048],
      ['1mib', 1_048_576],
    ];
    for (const [text, bytes] of cases) assert.equal(parseBytes(text), bytes, text);
    for (const text of ['1.5mb', '1gb', 'kb', '']) assert.throws(() => parseBytes(text), OptionError, text);
  });

  it('parses the text of a flag by its kind, and a failure names the option, the flag and the variable', () => {
    const spec = (key: string) => OPTION_SPECS.find((s) => s.key === key)!;
    assert.equal(parseOptionText(spec('pollTimeoutMs'), '90s'), 90_000);
    assert.equal(parseOptionText(spec('wsMaxPayload'), '1mb'), 1_048_576);
    assert.equal(parseOptionText(spec('port'), '8080'), 8080);
    assert.equal(parseOptionText(spec('exchange'), 'events'), 'events');
    assert.throws(
      () => parseOptionText(spec('port'), '80.5'),
      /^OptionError: --port \/ WARREN_PORT \/ port: "80.5" is not a whole number$/,
    );
    assert.throws(
      () => parseOptionText(spec('pollTimeoutMs'), 'soon'),
      /--poll-timeout \/ WARREN_POLL_TIMEOUT \/ pollTimeoutMs: "soon" is not a duration/,
    );
    assert.throws(
      () => parseOptionText(spec('wsMaxPayload'), 'big'),
      /--ws-max-payload \/ WARREN_WS_MAX_PAYLOAD \/ wsMaxPayload: "big" is not a size/,
    );
  });

  it('shows durations in the largest whole unit', () => {
    assert.equal(showDuration(300_000), '5m');
    assert.equal(showDuration(90_000), '90s');
    assert.equal(showDuration(1500), '1500ms');
    assert.equal(showDuration(0), '0s');
  });
});

describe('gateway options: ranges', () => {
  const numeric = OPTION_SPECS.filter((s) => s.kind === 'integer' || s.kind === 'duration' || s.kind === 'bytes');

  it('accepts every numeric option at both ends of its range', () => {
    for (const spec of numeric) {
      for (const value of [spec.min!, spec.max!]) {
        // Pairs that must stay ordered (poll timeout ≤ its maximum, first reconnect delay ≤ the longest,
        // drain delay + spread ≤ the shutdown timeout).
        const partners: Record<string, GatewayOptions> = {
          pollTimeoutMs: { maxPollTimeoutMs: 3_600_000 },
          maxPollTimeoutMs: { pollTimeoutMs: 0 },
          reconnectMinMs: { reconnectMaxMs: 600_000 },
          reconnectMaxMs: { reconnectMinMs: 10 },
          drainDelayMs: { shutdownTimeoutMs: 3_600_000 },
          drainSpreadMs: { shutdownTimeoutMs: 3_600_000 },
          shutdownTimeoutMs: { drainDelayMs: 0, drainSpreadMs: 0 },
        };
        const extra = partners[spec.key] ?? {};
        assert.equal(
          (normalizeOptions({ ...extra, [spec.key]: value }) as unknown as Record<string, unknown>)[spec.key],
          value,
          `${spec.key} = ${value}`,
        );
      }
    }
  });

  it('refuses every numeric option just outside its range, naming the option, its flag and its variable', () => {
    for (const spec of numeric) {
      for (const value of [spec.min! - 1, spec.max! + 1]) {
        assert.throws(
          () => normalizeOptions({ [spec.key]: value }),
          (e: unknown) => e instanceof OptionError && e.message.startsWith(`${spec.flag} / ${spec.env} / ${spec.key} must be between `),
          `${spec.key} = ${value}`,
        );
      }
    }
  });

  it('words a duration range in units and a size range in bytes', () => {
    assert.throws(
      () => normalizeOptions({ queueExpiresMs: 10 }),
      /^OptionError: --queue-expires \/ WARREN_QUEUE_EXPIRES \/ queueExpiresMs must be between 1s and 43200m, got 10ms$/,
    );
    assert.throws(() => normalizeOptions({ wsMaxPayload: 0 }), /must be between 1 and 16777216, got 0$/);
  });

  it('refuses a number that is not whole, or not a number', () => {
    assert.throws(() => normalizeOptions({ port: 80.5 }), /--port \/ WARREN_PORT \/ port must be a whole number, got 80.5/);
    assert.throws(() => normalizeOptions({ pollTimeoutMs: '25s' as never }), /--poll-timeout.* must be a whole number, got "25s"/);
    assert.throws(() => normalizeOptions({ queueMaxLength: Number.NaN }), /--queue-max-length/);
  });
});

describe('gateway options: strings, URLs and lists', () => {
  const refuses = (options: GatewayOptions, pattern: RegExp) =>
    assert.throws(
      () => normalizeOptions(options),
      (e: unknown) => e instanceof OptionError && pattern.test(e.message),
      JSON.stringify(options),
    );

  it('checks URLs by scheme', () => {
    assert.equal(normalizeOptions({ amqpUrl: 'amqps://user:pw@rabbit:5671/vhost' }).amqpUrl, 'amqps://user:pw@rabbit:5671/vhost');
    refuses({ amqpUrl: 'not a url' }, /^--amqp-url \/ WARREN_AMQP_URL \/ amqpUrl is not a URL$/);
    refuses(
      { upstream: 'ftp://app', pushRoutes: '/live/' },
      /^--upstream \/ WARREN_UPSTREAM \/ upstream must start with http:\/\/ or https:\/\/, got ftp:\/\/$/,
    );
    refuses({ authUrl: 'amqp://x' }, /--auth-url.*http:\/\/ or https:\/\//);
  });

  it('checks secrets by length and characters (16 for the publish token, 32 for the token secret)', () => {
    normalizeOptions({ publishToken: 'x'.repeat(16) });
    refuses({ publishToken: 'x'.repeat(15) }, /--publish-token.*16 to 256 visible ASCII/);
    refuses({ publishToken: `${'x'.repeat(16)} y` }, /--publish-token.*visible ASCII/);
    normalizeOptions({ tokenSecret: 'y'.repeat(32) });
    refuses({ tokenSecret: 'y'.repeat(31) }, /--token-secret.*32 to 256 visible ASCII/);
    refuses({ tokenSecret: 'y'.repeat(257) }, /--token-secret/);
  });

  it('checks origins, route prefixes, the message path and method', () => {
    normalizeOptions({ corsOrigins: 'https://app.example.com, http://localhost:3000' });
    normalizeOptions({ corsOrigins: '*' });
    refuses(
      { corsOrigins: 'https://app.example.com/' },
      /--cors-origins.*an origin is scheme:\/\/host\[:port\], e.g. https:\/\/app.example.com$/,
    );
    refuses({ corsOrigins: 'app.example.com' }, /--cors-origins.*not an origin/);
    normalizeOptions({ upstream: 'http://app:3000', pushRoutes: '/live/, /rooms/', appRoutes: '/live/api/' });
    refuses({ upstream: 'http://app:3000', pushRoutes: 'live/' }, /--push-routes.*"live\/"; a prefix starts with "\/" \(not "\/_"\)/);
    refuses({ upstream: 'http://app:3000', pushRoutes: '/_warren/' }, /--push-routes/);
    normalizeOptions({ wsMessagePath: '/api/messages{channel}' });
    refuses({ wsMessagePath: 'api' }, /--ws-message-path/);
    refuses({ wsMessagePath: '/api?x={channel}' }, /--ws-message-path/);
    normalizeOptions({ wsMessageMethod: 'PUT' });
    refuses({ wsMessageMethod: 'GET' }, /--ws-message-method.*POST, PUT or PATCH/);
    refuses({ logLevel: 'loud' as never }, /--log-level.*debug, info, warn, error, silent/);
    refuses({ exchange: 'x'.repeat(256) }, /--exchange.*at most 255 characters/);
  });

  it('checks trusted proxies and names the bad entry', () => {
    normalizeOptions({ trustedProxies: '10.0.0.0/8, ::1/128, 192.168.1.10' });
    refuses(
      { trustedProxies: '10.0.0.0/8, proxy.internal' },
      /^--trusted-proxies \/ WARREN_TRUSTED_PROXIES \/ trustedProxies has "proxy.internal", which is neither an IP address nor a CIDR range/,
    );
  });
});

describe('gateway options: contradictions', () => {
  it('refuses a poll timeout above its maximum, naming both', () => {
    normalizeOptions({ pollTimeoutMs: 30_000, maxPollTimeoutMs: 30_000 });
    assert.throws(
      () => normalizeOptions({ pollTimeoutMs: 60_000, maxPollTimeoutMs: 30_000 }),
      /--poll-timeout \/ WARREN_POLL_TIMEOUT \/ pollTimeoutMs \(1m\) exceeds --max-poll-timeout \/ WARREN_MAX_POLL_TIMEOUT \/ maxPollTimeoutMs \(30s\)/,
    );
  });

  it('refuses a first reconnect delay above the longest', () => {
    normalizeOptions({ reconnectMinMs: 1000, reconnectMaxMs: 1000 });
    assert.throws(() => normalizeOptions({ reconnectMinMs: 2000, reconnectMaxMs: 1000 }), /--reconnect-min.*exceeds.*--reconnect-max/);
  });

  it('refuses app routes without an upstream, and an upstream without push routes', () => {
    assert.throws(
      () => normalizeOptions({ appRoutes: '/live/api/' }),
      /--app-routes \/ WARREN_APP_ROUTES \/ appRoutes needs --upstream \/ WARREN_UPSTREAM \/ upstream/,
    );
    assert.throws(
      () => normalizeOptions({ upstream: 'http://app:3000' }),
      /--upstream \/ WARREN_UPSTREAM \/ upstream needs --push-routes \/ WARREN_PUSH_ROUTES \/ pushRoutes/,
    );
  });

  it('takes the TLS certificate and key together or not at all, as file paths', () => {
    const both = normalizeOptions({ tlsCert: '/etc/warren/cert.pem', tlsKey: '/etc/warren/key.pem' });
    assert.deepEqual([both.tlsCert, both.tlsKey], ['/etc/warren/cert.pem', '/etc/warren/key.pem']);
    assert.equal(normalizeOptions({ tlsCert: '', tlsKey: '' }).tlsCert, undefined, 'empty is unset');
    assert.throws(
      () => normalizeOptions({ tlsCert: 'cert.pem' }),
      /^OptionError: --tls-cert \/ WARREN_TLS_CERT \/ tlsCert needs --tls-key \/ WARREN_TLS_KEY \/ tlsKey: TLS takes both/,
    );
    assert.throws(() => normalizeOptions({ tlsKey: 'key.pem' }), /--tls-key \/ WARREN_TLS_KEY \/ tlsKey needs --tls-cert/);
    assert.throws(
      () => normalizeOptions({ tlsCert: 'cert\0.pem', tlsKey: 'key.pem' }),
      /--tls-cert \/ WARREN_TLS_CERT \/ tlsCert must be a file path/,
    );
    assert.throws(() => normalizeOptions({ tlsCert: 42 as unknown as string, tlsKey: 'key.pem' }), /tlsCert must be a file path/);
  });

  it('takes one source of JWT keys, and JWT claim checks only with one', () => {
    const refuses = (options: GatewayOptions, pattern: RegExp) =>
      assert.throws(
        () => normalizeOptions(options),
        (e: unknown) => e instanceof OptionError && pattern.test(e.message),
        JSON.stringify(options),
      );
    const jwks = normalizeOptions({
      tokenJwksUrl: 'https://idp.example/.well-known/jwks.json',
      tokenAudience: 'warren',
      tokenIssuer: 'https://idp.example',
    });
    assert.deepEqual([jwks.tokenJwksRefreshMs, jwks.tokenJwksCooldownMs], [300_000, 30_000]);
    normalizeOptions({ tokenSecret: 'y'.repeat(32), tokenPublicKey: '/etc/warren/jwt.pem', tokenAudience: 'warren' });
    refuses({ tokenJwksUrl: 'file:///etc/jwks.json' }, /--token-jwks-url.*http:\/\/ or https:\/\//);
    refuses(
      { tokenPublicKey: '/etc/warren/jwt.pem', tokenJwksUrl: 'https://idp.example/jwks' },
      /^--token-public-key \/ WARREN_TOKEN_PUBLIC_KEY \/ tokenPublicKey and --token-jwks-url .*: give one source of JWT keys, not both$/,
    );
    refuses({ tokenAudience: 'warren' }, /^--token-audience .* needs --token-secret .*, --token-public-key .* or --token-jwks-url .*/);
    refuses({ tokenIssuer: 'https://idp.example' }, /^--token-issuer .* needs --token-secret/);
    refuses({ tokenJwksUrl: 'https://idp.example/jwks', tokenJwksCooldownMs: 10 }, /--token-jwks-cooldown.*must be between 100ms and 60m/);
  });

  it('refuses an AMQP heartbeat that is not whole seconds', () => {
    assert.equal(normalizeOptions({ amqpHeartbeatMs: 0 }).amqpHeartbeatMs, 0);
    assert.throws(
      () => normalizeOptions({ amqpHeartbeatMs: 1500 }),
      /--amqp-heartbeat \/ WARREN_AMQP_HEARTBEAT \/ amqpHeartbeatMs must be whole seconds, got 1500ms/,
    );
  });
});
