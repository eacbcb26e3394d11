import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { OPTION_SPECS } from '@warren/gateway';
import { ERROR_CODES } from '@warren/protocol';
import { ROOT } from './support/index.js';

const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
const compose = readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8');

describe('documentation matches the code', () => {
  it('the README gives the two set-up commands, and .ci/run calls the test one', () => {
    assert.match(readme, /^npm install && npm start\s/m);
    assert.match(readme, /^npm test\s/m);
    assert.match(readFileSync(join(ROOT, '.ci', 'run'), 'utf8'), /^npm test$/m);
  });

  it('the README quick start says that a message published before a consumer\'s first poll is not kept for it', () => {
    const quickStart = /^## Quick start\n([^]*?)^## /m.exec(readme)?.[1];
    assert.ok(quickStart, 'a Quick start section');
    assert.match(quickStart.replace(/\s+/g, ' '), /a message published before a consumer's first poll is not kept for it \(by design/);
    // The consumer is started first, then the publisher.
    assert.ok(quickStart.indexOf('curl http://localhost:4000/greetings') < quickStart.indexOf('npx warren publish /greetings'));
  });

  it('the README configuration table lists every setting with its flag and variable, and nothing else', () => {
    const rows = [...readme.matchAll(/^\| `(--[a-z-]+)` \| `(WARREN_[A-Z_]+)` \|/gm)].map((m) => [m[1], m[2]]);
    assert.deepEqual(rows, OPTION_SPECS.map((s) => [s.flag, s.env]));
  });

  it('the README error table lists every error code with its status', () => {
    const rows = [...readme.matchAll(/^\| `([A-Z_]+)` \| (\d{3}|—) \|/gm)].map((m) => [m[1], m[2] === '—' ? null : Number(m[2])]);
    assert.deepEqual(rows, Object.entries(ERROR_CODES).map(([code, v]) => [code, v.status]));
  });

  it('docker-compose.yml sets only real settings, with credentials RabbitMQ will accept', () => {
    const known = new Set(OPTION_SPECS.map((s) => s.env));
    const used = [...compose.matchAll(/^\s+(WARREN_[A-Z_]+):/gm)].map((m) => m[1]);
    assert.ok(used.length >= 3);
    for (const name of used) assert.ok(known.has(name), `${name} is not a Warren setting`);
    const user = /RABBITMQ_DEFAULT_USER: (\S+)/.exec(compose)?.[1];
    const pass = /RABBITMQ_DEFAULT_PASS: (\S+)/.exec(compose)?.[1];
    const url = new URL(/WARREN_AMQP_URL: (\S+)/.exec(compose)![1]!);
    assert.equal(url.username, user);
    assert.equal(url.password, pass);
    assert.notEqual(user, 'guest', 'RabbitMQ refuses guest from other hosts');
    assert.match(compose, new RegExp(`^  ${url.hostname}:$`, 'm'), 'the URL names the rabbitmq service');
    assert.match(compose, /rabbitmq-diagnostics", "-q", "ping"/);
    assert.match(compose, /condition: service_healthy/);
    assert.match(compose, /WARREN_HOST: 0\.0\.0\.0/);
  });
});
