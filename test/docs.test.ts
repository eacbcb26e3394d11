import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { OPTION_SPECS } from '@warren/gateway';
import { ERROR_CODES } from '@warren/protocol';
import { ROOT } from './support/index.js';

const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
const configuration = readFileSync(join(ROOT, 'docs', 'configuration.md'), 'utf8');
const compose = readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8');

/** Every markdown file of the repository: the README, docs/, bench/, examples/, the packages' READMEs. */
function markdownFiles(dir = ROOT): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.') || entry.name === 'node_modules' || entry.name === 'dist') continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...markdownFiles(path));
    else if (entry.name.endsWith('.md')) found.push(path);
  }
  return found;
}

describe('documentation matches the code', () => {
  it('the README gives the two set-up commands (tests need RabbitMQ), and .ci/run calls the test one', () => {
    assert.match(readme, /^npm install && npm start\s/m);
    assert.match(readme, /^npm test\s+#.*needs RabbitMQ/m, 'the test command says the tests need RabbitMQ');
    assert.match(readFileSync(join(ROOT, '.ci', 'run'), 'utf8'), /^npm test$/m);
  });

  it('the docs/configuration.md settings table lists every setting with its flag and variable, and nothing else', () => {
    const rows = [...configuration.matchAll(/^\| `(--[a-z-]+)` \| `(WARREN_[A-Z_]+)` \|/gm)].map((m) => [m[1], m[2]]);
    assert.deepEqual(rows, OPTION_SPECS.map((s) => [s.flag, s.env]));
  });

  it('the docs/configuration.md error table lists every error code with its status', () => {
    const rows = [...configuration.matchAll(/^\| `([A-Z_]+)` \| (\d{3}|—) \|/gm)].map((m) => [m[1], m[2] === '—' ? null : Number(m[2])]);
    assert.deepEqual(rows, Object.entries(ERROR_CODES).map(([code, v]) => [code, v.status]));
  });

  it('docs/configuration.md holds the tables scripts/readme-tables.mjs writes, word for word', async () => {
    const script = await import(pathToFileURL(join(ROOT, 'scripts', 'readme-tables.mjs')).href);
    assert.equal(script.TABLES_FILE, join(ROOT, 'docs', 'configuration.md'));
    assert.equal(script.withTables(configuration), configuration, 'run `node scripts/readme-tables.mjs` after `npm run build`');
    assert.throws(() => script.withTables(readme), /no settings table/, 'the script refuses a file without the tables');
  });

  it('no other markdown file keeps a copy of the generated tables', () => {
    for (const file of markdownFiles()) {
      if (file === join(ROOT, 'docs', 'configuration.md')) continue;
      assert.doesNotMatch(readFileSync(file, 'utf8'), /^\| Flag \| Variable \| Default \| Meaning \|$|^\| Code \| Status \| Meaning \|$/m, relative(ROOT, file));
    }
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
