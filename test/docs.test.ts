import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { OPTION_SPECS } from '@warren/gateway';
import { ERROR_CODES } from '@warren/protocol';
import { ROOT } from './support/index.js';
import { dependsOn, readCompose, serviceEnv } from './support/stack.js';

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

/** Markdown without its fenced code blocks, where `# x` is no heading. */
function withoutFences(markdown: string): string {
  return markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '');
}

/** Markdown without fenced code blocks and code spans, where `[a](b)` is no link. */
function prose(markdown: string): string {
  return withoutFences(markdown).replace(/`[^`]*`/g, '');
}

/** The anchors GitHub gives a file's headings: lower case, punctuation dropped, spaces as hyphens, repeats numbered. */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const [, text] of withoutFences(markdown)
    .replace(/`([^`]*)`/g, '$1')
    .matchAll(/^#{1,6} +(.+?) *#* *$/gm)) {
    const slug = text!
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
      .toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
      .replace(/ /g, '-');
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    out.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return out;
}

/** The relative links of `markdown` (in file `from`) that name no file, or a heading its target lacks. */
function brokenLinks(from: string, markdown: string): string[] {
  const broken: string[] = [];
  for (const [, target] of prose(markdown).matchAll(/\]\(<?([^)\s>]+)>?(?: +"[^"]*")?\)/g)) {
    if (/^[a-z][a-z0-9+.-]*:|^\/\//i.test(target!)) continue; // https:, mailto:, //host
    const [path, anchor] = target!.split('#', 2) as [string, string | undefined];
    const file = path === '' ? from : join(dirname(from), decodeURIComponent(path));
    if (!existsSync(file)) broken.push(`${target}: no such file`);
    else if (anchor !== undefined) {
      if (statSync(file).isDirectory() || !file.endsWith('.md')) broken.push(`${target}: an anchor into a file that has no headings`);
      else if (!anchors(file === from ? markdown : readFileSync(file, 'utf8')).has(anchor)) broken.push(`${target}: no such heading`);
    }
  }
  return broken;
}

describe('documentation matches the code', () => {
  it('the README gives the two set-up commands (tests need RabbitMQ), and .ci/run calls the test one', () => {
    assert.match(readme, /^npm install && npm start\s/m);
    assert.match(readme, /^npm test\s+#.*needs RabbitMQ/m, 'the test command says the tests need RabbitMQ');
    assert.match(readFileSync(join(ROOT, '.ci', 'run'), 'utf8'), /^npm test$/m);
  });

  it("the README quick start says that a message published before a consumer's first poll is not kept for it", () => {
    const quickStart = /^## Quick start\n([^]*?)^## /m.exec(readme)?.[1];
    assert.ok(quickStart, 'a Quick start section');
    assert.match(quickStart.replace(/\s+/g, ' '), /a message published before a consumer's first poll is not kept for it \(by design/);
    // The consumer is started first, then the publisher.
    assert.ok(quickStart.indexOf('curl http://localhost:4000/greetings') < quickStart.indexOf('npx warren publish /greetings'));
  });

  it('the README long-poll walkthrough names the minted id in a poll before it publishes (no queue is made for a minted id)', () => {
    const walk = /^## The curl walkthrough: long-poll\n([^]*?)^## /m.exec(readme)?.[1];
    assert.ok(walk, 'a long-poll walkthrough section');
    const named = walk.indexOf('curl -H "Consumer-Id: $ID"');
    const published = walk.indexOf('npx warren publish /greetings one');
    assert.ok(named >= 0 && published >= 0, 'a poll naming $ID and a publish');
    assert.ok(named < published, 'what is published before the poll that makes the queue is lost: poll first');
  });

  it('the docs/configuration.md settings table lists every setting with its flag and variable, and nothing else', () => {
    const rows = [...configuration.matchAll(/^\| `(--[a-z-]+)` \| `(WARREN_[A-Z_]+)` \|/gm)].map((m) => [m[1], m[2]]);
    assert.deepEqual(
      rows,
      OPTION_SPECS.map((s) => [s.flag, s.env]),
    );
  });

  it('the docs/configuration.md error table lists every error code with its status', () => {
    const rows = [...configuration.matchAll(/^\| `([A-Z_]+)` \| (\d{3}|—) \|/gm)].map((m) => [m[1], m[2] === '—' ? null : Number(m[2])]);
    assert.deepEqual(
      rows,
      Object.entries(ERROR_CODES).map(([code, v]) => [code, v.status]),
    );
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
      assert.doesNotMatch(
        readFileSync(file, 'utf8'),
        /^\| Flag \| Variable \| Default \| Meaning \|$|^\| Code \| Status \| Meaning \|$/m,
        relative(ROOT, file),
      );
    }
  });

  it('every relative link in the markdown files names an existing file and, with an anchor, an existing heading', () => {
    const files = markdownFiles();
    for (const name of ['README.md', 'docs/protocol.md', 'docs/configuration.md', 'bench/README.md', 'examples/README.md']) {
      assert.ok(files.includes(join(ROOT, name)), `${name} is checked`);
    }
    const broken = files.flatMap((file) => brokenLinks(file, readFileSync(file, 'utf8')).map((b) => `${relative(ROOT, file)}: ${b}`));
    assert.deepEqual(broken, []);
    assert.ok(prose(readme).match(/\]\((?!https?:)/g)!.length >= 20, 'the README links to its docs');
  });

  it('the link check finds a missing file, a missing heading and an anchor into a file without headings', () => {
    const from = join(ROOT, 'README.md');
    const text =
      '[a](docs/nope.md) [b](docs/protocol.md#nope) [c](package.json#x) [d](#nope) `[e](nope.md)` [f](docs/protocol.md#frames) [g](#quick-start) [h](https://example.com/nope.md)';
    assert.deepEqual(brokenLinks(from, `# Quick start\n\n${text}\n`), [
      'docs/nope.md: no such file',
      'docs/protocol.md#nope: no such heading',
      'package.json#x: an anchor into a file that has no headings',
      '#nope: no such heading',
    ]);
    assert.ok(anchors('## The `warren` command\n## Delivery guarantees, under faults\n## A\n## A\n').has('the-warren-command'));
    assert.deepEqual(
      [...anchors('## Delivery guarantees, under faults\n## A\n## A\n```\n# not a heading\n```\n')],
      ['delivery-guarantees-under-faults', 'a', 'a-1'],
    );
  });

  it('the README links every file of docs/ and bench/summary.md, so each is one click away', () => {
    const linked = new Set([...prose(readme).matchAll(/\]\(([^)#\s]+)/g)].map((m) => m[1]));
    const docs = readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md'));
    assert.ok(docs.length >= 7);
    for (const doc of [...docs.map((f) => `docs/${f}`), 'bench/summary.md']) assert.ok(linked.has(doc), `README.md links ${doc}`);
  });

  it('docker-compose.yml sets only real settings, with credentials RabbitMQ will accept', () => {
    // The file as Compose reads it: YAML, `${VAR:-default}` filled in with the defaults.
    const { services } = readCompose();
    const known = new Set(OPTION_SPECS.map((s) => s.env));
    const env = serviceEnv(services.gateway!);
    const used = [...compose.matchAll(/^\s+(WARREN_[A-Z_]+):/gm)].map((m) => m[1]);
    assert.ok(used.length >= 3);
    for (const name of used) assert.ok(known.has(name), `${name} is not a Warren setting`);
    const rabbit = serviceEnv(services.rabbitmq!);
    const url = new URL(env.WARREN_AMQP_URL!);
    assert.equal(url.username, rabbit.RABBITMQ_DEFAULT_USER);
    assert.equal(url.password, rabbit.RABBITMQ_DEFAULT_PASS);
    assert.notEqual(url.username, 'guest', 'RabbitMQ refuses guest from other hosts');
    assert.ok(services[url.hostname]?.image?.startsWith('rabbitmq:'), 'the URL names the rabbitmq service');
    assert.deepEqual(services.rabbitmq!.healthcheck?.test, ['CMD', 'rabbitmq-diagnostics', '-q', 'ping']);
    assert.equal(dependsOn(services.gateway!).rabbitmq, 'service_healthy');
    assert.equal(env.WARREN_HOST, '0.0.0.0');
  });
});
