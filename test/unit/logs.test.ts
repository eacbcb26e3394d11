// Request ids, the access log's option, and the pino adapter (packages/gateway/src/{request-id,logger,options}.ts).
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { createLogger, normalizeOptions, OptionError, parseRequestId } from '@warren/gateway';
import { adaptLogger, isPinoLike } from '#gateway/logger.js';
import { TrustedProxies } from '#gateway/proxies.js';
import { requestId } from '#gateway/request-id.js';

/** What `requestId` reads of a request: the peer and the headers. */
const request = (remoteAddress: string, id?: string): IncomingMessage =>
  ({ socket: { remoteAddress }, headers: id === undefined ? {} : { 'x-request-id': id } }) as unknown as IncomingMessage;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('parseRequestId', () => {
  it('keeps ids of letters, digits and . _ ~ : @ / + = -, 1 to 128 characters', () => {
    for (const id of ['a', 'f47ac10b-58cc-4372-a567-0e02b2c3d479', 'edge:7f3a/1', 'YWJj+ZA==', 'x'.repeat(128), 'u@h~1.2_3']) {
      assert.equal(parseRequestId(id), id);
    }
  });

  it('refuses an empty, too long, repeated or unsafe one', () => {
    for (const id of ['', 'x'.repeat(129), 'a, b', 'has space', 'quote"', 'line\nbreak', 'tab\t', 'é', '<script>', undefined]) {
      assert.equal(parseRequestId(id), undefined, JSON.stringify(id));
    }
    assert.equal(parseRequestId(['a', 'b']), undefined);
  });
});

describe('requestId', () => {
  const trusted = new TrustedProxies('10.0.0.0/8, ::1');

  it("takes a trusted proxy's valid id, and keeps it for the request", () => {
    const req = request('::ffff:10.1.2.3', 'edge-1');
    assert.equal(requestId(req, trusted), 'edge-1');
    req.headers['x-request-id'] = 'changed';
    assert.equal(requestId(req, trusted), 'edge-1', 'chosen once');
    assert.equal(requestId(request('::1', 'edge-2'), trusted), 'edge-2');
  });

  it("makes a new one for anyone else's, a trusted proxy's invalid one, and none at all; each its own", () => {
    const made = [
      requestId(request('203.0.113.7', 'forged'), trusted),
      requestId(request('10.0.0.1', 'bad id'), trusted),
      requestId(request('10.0.0.1'), trusted),
      requestId(request('127.0.0.1', 'forged'), new TrustedProxies(undefined)),
    ];
    for (const id of made) assert.match(id, UUID);
    assert.equal(new Set(made).size, made.length);
  });
});

describe('the accessLog option', () => {
  it('is off by default and takes off, stdout, stderr and logger', () => {
    assert.equal(normalizeOptions({}).accessLog, 'off');
    for (const target of ['off', 'stdout', 'stderr', 'logger'] as const)
      assert.equal(normalizeOptions({ accessLog: target }).accessLog, target);
  });

  it('refuses anything else, naming the option', () => {
    assert.throws(
      () => normalizeOptions({ accessLog: '/var/log/warren.log' as never }),
      (e: unknown) =>
        e instanceof OptionError &&
        /--access-log \/ WARREN_ACCESS_LOG \/ accessLog must be one of off, stdout, stderr, logger/.test(e.message),
    );
  });
});

describe('a pino logger', () => {
  const into = (lines: Record<string, unknown>[]) =>
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const text of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(text) as Record<string, unknown>);
        done();
      },
    });

  it('is recognised (and its children), the gateway’s own logger and a plain object are not', () => {
    const logger = pino({}, into([]));
    assert.equal(isPinoLike(logger), true);
    assert.equal(isPinoLike(logger.child({ part: 'gateway' })), true);
    assert.equal(isPinoLike(createLogger('info', () => undefined)), false);
    assert.equal(isPinoLike({ info() {}, warn() {}, error() {}, debug() {} }), false);
    assert.equal(isPinoLike(null), false);
  });

  it('is called fields first: the fields become properties, the message is msg, pino keeps its level and bindings', () => {
    const lines: Record<string, unknown>[] = [];
    const log = adaptLogger(pino({ level: 'info' }, into(lines)).child({ part: 'gateway' }));
    log.info('gateway listening', { port: 4000 });
    log.debug('not at info', { port: 1 });
    log.error('no fields');
    assert.equal(lines.length, 2, JSON.stringify(lines));
    assert.deepEqual([lines[0]!.msg, lines[0]!.port, lines[0]!.level, lines[0]!.part], ['gateway listening', 4000, 30, 'gateway']);
    assert.deepEqual([lines[1]!.msg, lines[1]!.level], ['no fields', 50]);
  });

  it('leaves a logger of the gateway’s own shape as it is', () => {
    const own = createLogger('info', () => undefined);
    assert.equal(adaptLogger(own), own);
    assert.equal(normalizeOptions({ logger: own }).logger, own);
  });
});
