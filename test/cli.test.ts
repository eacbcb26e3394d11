import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { OPTION_SPECS } from '@warren/gateway';
import { AMQP_URL, curl, requireRabbit, ROOT, spawnServe, TOKEN, unique, until, warren } from './support/index.js';

type Served = Awaited<ReturnType<typeof spawnServe>>;

describe('warren serve / publish / listen as real processes (embedded broker)', () => {
  let served: Served;
  before(async () => {
    served = await spawnServe([]);
  });
  after(() => served.stop());

  it('prints how to receive and publish, and writes the publish token for the local CLI', () => {
    const out = served.output();
    assert.match(out, /receive: {2}curl http:\/\/localhost:\d+\/greetings/);
    assert.match(out, /publish: {2}npx warren publish \/greetings 'hi there!'/);
    const m = /generated, in (\S+)/.exec(out);
    assert.ok(m, out);
    assert.ok(existsSync(m![1]!));
    assert.equal(statSync(m![1]!).mode & 0o777, 0o600, 'the token file is private');
  });

  it('curl waits on /greetings and prints what `warren publish` sends', async () => {
    const consumerId = unique('curl-');
    const received = curl(['-H', `Consumer-Id: ${consumerId}`, `${served.url}/greetings`]);
    const health = JSON.parse(await curl([`${served.url}/_warren/health`]));
    assert.equal(health.status, 'ok');
    // curl is waiting once a consumer is attached; publishing earlier would find no queue.
    await until(
      async () =>
        JSON.parse(await curl(['-H', `Authorization: Bearer ${tokenOf(served)}`, `${served.url}/_warren/stats`])).broker.activeConsumers ===
        1,
      'curl to wait',
    );
    const pub = await warren(['publish', '/greetings', 'hi there!', '--url', served.url]);
    assert.equal(pub.code, 0, pub.stderr);
    assert.match(pub.stdout, /^[0-9a-f-]{36}\n$/);
    assert.equal(await received, 'hi there!');
  });

  it('`warren publish` reads the message from standard input, and `warren listen` prints one per line keeping its consumer id', async () => {
    const channel = `/${unique('cli-')}`;
    const consumerId = unique('listener-');
    const listening = warren(['listen', channel, '--url', served.url, '--consumer-id', consumerId, '--count', '3', '--timeout', '5']);
    await until(
      async () =>
        JSON.parse(await curl(['-H', `Authorization: Bearer ${tokenOf(served)}`, `${served.url}/_warren/stats`])).broker.activeConsumers ===
        1,
      'listen to wait',
    );
    for (const text of ['first', 'second']) {
      const pub = await warren(['publish', channel, '--url', served.url], { input: `${text}\n` });
      assert.equal(pub.code, 0, pub.stderr);
    }
    const json = await warren(['publish', channel, '--json', '--url', served.url, '--event', 'note'], { input: '{"n":3}' });
    assert.equal(json.code, 0, json.stderr);
    const out = await listening;
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.stdout, 'first\nsecond\n{"n":3}\n');
    assert.match(out.stderr, new RegExp(`listening on ${channel} as consumer ${consumerId}`));
  });

  it('`warren listen` without an id takes the assigned one and keeps it between polls', async () => {
    const channel = `/${unique('anon-')}`;
    const stats = async () => JSON.parse(await curl(['-H', `Authorization: Bearer ${tokenOf(served)}`, `${served.url}/_warren/stats`]));
    const before = await stats();
    const listening = warren(['listen', channel, '--url', served.url, '--count', '2', '--timeout', '0.2']);
    // Several 0.2 s polls time out and follow each other...
    await until(async () => (await stats()).longPoll.timedOut >= before.longPoll.timedOut + 4, 'listen to poll a few times');
    await warren(['publish', channel, 'a', '--url', served.url]);
    await warren(['publish', channel, 'b', '--url', served.url]);
    const out = await listening;
    assert.equal(out.stdout, 'a\nb\n');
    assert.match(out.stderr, /as consumer c_[A-Za-z0-9_-]{22}\n/);
    // ...all on one consumer id, so on one queue: a listener that lost its id would declare one per poll.
    // (Two declarations: the first poll, on a minted id, waits on the channel's live fan-out queue; the next ones on the consumer's queue.)
    const after = await stats();
    assert.ok(after.longPoll.started - before.longPoll.started >= 5);
    assert.equal(after.broker.queueDeclares - before.broker.queueDeclares, 2);
  });

  it('`warren publish` reports coded errors and exits non-zero', async () => {
    const bad = await warren(['publish', 'no-slash', 'x', '--url', served.url]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /INVALID_CHANNEL/);
    const wrong = await warren(['publish', '/a', 'x', '--url', served.url, '--token', 'wrong-token-0123456789']);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /UNAUTHORIZED/);
    const down = await warren(['publish', '/a', 'x', '--url', 'http://127.0.0.1:1', '--token', TOKEN]);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /GATEWAY_UNREACHABLE/);
    const tokenless = await warren(['publish', '/a', 'x', '--url', 'http://127.0.0.1:1'], { env: { WARREN_PUBLISH_TOKEN: '' } });
    assert.equal(tokenless.code, 1);
    assert.match(
      tokenless.stderr,
      /^warren: no publish token for http:\/\/127\.0\.0\.1:1: give --token or set WARREN_PUBLISH_TOKEN, or start that gateway with `warren serve` on this machine \(it writes \S+warren-1\.token\)\n$/,
    );
    const remote = await warren(['publish', '/a', 'x', '--url', 'http://gateway.invalid'], { env: { WARREN_PUBLISH_TOKEN: '' } });
    assert.equal(remote.code, 1);
    assert.equal(remote.stderr, 'warren: no publish token for http://gateway.invalid: give --token or set WARREN_PUBLISH_TOKEN\n');
  });
});

describe('warren serve / listen / publish refuse cleanly', () => {
  it('reports a host it cannot listen on, a bad --url and a non-http --url without a stack trace', async () => {
    // 203.0.113.1 (TEST-NET-3) is not an address of this machine: binding fails at once, nothing is sent.
    const host = await warren(['serve', '--port', '0', '--host', '203.0.113.1']);
    assert.equal(host.code, 1);
    assert.match(host.stderr, /^warren serve: cannot listen on 203\.0\.113\.1 port 0 \(EADDRNOTAVAIL\)/);
    assert.doesNotMatch(host.stderr, /\n\s+at /, 'no stack trace');
    const ftp = await warren(['publish', '/a', 'x', '--url', 'ftp://x']);
    assert.equal(ftp.code, 1);
    assert.match(ftp.stderr, /^warren: Producer: url must start with/);
    const listen = await warren(['listen', '/a', '--url', 'not a url']);
    assert.equal(listen.code, 1);
    assert.match(listen.stderr, /^warren: --url "not a url" is not a URL/);
  });

  it('`warren listen` stops with advice when another poller takes over its consumer id', async () => {
    const served = await spawnServe([]);
    try {
      const channel = `/${unique('shared-')}`;
      const first = warren(['listen', channel, '--url', served.url, '--consumer-id', 'shared-1', '--timeout', '20']);
      await until(
        async () =>
          JSON.parse(await curl(['-H', `Authorization: Bearer ${tokenOf(served)}`, `${served.url}/_warren/stats`])).broker
            .activeConsumers === 1,
        'the first listener to wait',
      );
      const second = warren(['listen', channel, '--url', served.url, '--consumer-id', 'shared-1', '--timeout', '1', '--count', '1']);
      const out = await first;
      assert.equal(out.code, 1);
      assert.match(out.stderr, /took over \(409 POLL_SUPERSEDED\); give each listener its own --consumer-id/);
      await warren(['publish', channel, 'to the survivor', '--url', served.url]);
      assert.equal((await second).stdout, 'to the survivor\n');
    } finally {
      await served.stop();
    }
  });
});

describe('the publish token file', () => {
  it('lives in a private directory and replaces, never writes through, what is planted at its path', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'warren-tokens-'));
    const env = { TMPDIR: tmp, XDG_RUNTIME_DIR: '' };
    const port = await freePort();
    const dir = join(tmp, `warren-${process.getuid!()}`);
    mkdirSync(dir, { mode: 0o700 });
    const victim = join(tmp, 'victim.txt');
    writeFileSync(victim, 'precious\n');
    symlinkSync(victim, join(dir, `warren-${port}.token`));
    const served = await spawnServe(['--port', String(port)], env);
    try {
      const path = join(dir, `warren-${port}.token`);
      assert.ok(served.output().includes(path), served.output());
      assert.equal(readFileSync(victim, 'utf8'), 'precious\n', 'the link target is untouched');
      assert.equal(lstatSync(path).isSymbolicLink(), false);
      assert.equal(statSync(path).mode & 0o777, 0o600);
      assert.match(readFileSync(path, 'utf8'), /^[A-Za-z0-9_-]{32}\n$/);
    } finally {
      await served.stop();
    }
    // A shared (group- or world-writable) directory is refused.
    chmodSync(dir, 0o777);
    const refused = await warren(['serve', '--port', '0', '--host', '127.0.0.1'], { env });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /is not a private directory of this user/);
    rmSync(tmp, { recursive: true, force: true });
  });
});

describe('warren serve options', () => {
  it('reads settings from --config (named as the flags), with flags winning', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'warren-config-'));
    const file = join(dir, 'warren.json');
    // A port the flag overrides, the publish token the tests use, and a 1 s poll timeout.
    writeFileSync(file, JSON.stringify({ port: 65535, 'publish-token': TOKEN, 'poll-timeout': '1s' }));
    const served = await spawnServe(['--config', file]);
    try {
      assert.notEqual(new URL(served.url).port, '65535', 'the --port flag wins over the file');
      assert.match(served.output(), /publish token: from --publish-token/);
      const channel = `/${unique('config-')}`;
      const consumerId = unique('c-');
      const started = Date.now();
      assert.equal(
        await curl(['-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', `Consumer-Id: ${consumerId}`, `${served.url}${channel}`]),
        '204',
      );
      assert.ok(Date.now() - started < 10_000, 'the 1 s poll timeout of the file, not the 25 s default');
      const pub = await warren(['publish', channel, 'from the file', '--url', served.url, '--token', TOKEN]);
      assert.equal(pub.code, 0, pub.stderr);
    } finally {
      await served.stop();
    }
    writeFileSync(file, JSON.stringify({ 'poll-timeot': '1s' }));
    const unknown = await warren(['serve', '--port', '0', '--config', file]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /"poll-timeot" is not a setting/);
    writeFileSync(file, '[1, 2]');
    const notObject = await warren(['serve', '--port', '0', '--config', file]);
    assert.equal(notObject.code, 2);
    assert.match(notObject.stderr, /a JSON object of settings/);
    rmSync(dir, { recursive: true, force: true });
  });

  it('rejects an invalid setting at start, naming the flag and the variable', async () => {
    const r = await warren(['serve', '--port', '0', '--poll-timeout', 'soon']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^warren serve: --poll-timeout \/ WARREN_POLL_TIMEOUT \/ pollTimeoutMs: "soon" is not a duration/);
    const env = await warren(['serve', '--port', '0'], { env: { WARREN_QUEUE_MAX_LENGTH: '0' } });
    assert.equal(env.code, 2);
    assert.match(env.stderr, /^warren serve: --queue-max-length \/ WARREN_QUEUE_MAX_LENGTH \/ queueMaxLength must be between 1 and/);
    const both = await warren(['serve', '--port', '0', '--poll-timeout', '60s', '--max-poll-timeout', '30s']);
    assert.equal(both.code, 2);
    assert.match(
      both.stderr,
      /^warren serve: --poll-timeout \/ WARREN_POLL_TIMEOUT \/ pollTimeoutMs \(1m\) exceeds --max-poll-timeout \/ WARREN_MAX_POLL_TIMEOUT \/ maxPollTimeoutMs \(30s\)\n$/,
    );
    const url = await warren(['serve', '--port', '0', '--amqp-url', 'http://rabbit']);
    assert.equal(url.code, 2);
    assert.match(url.stderr, /must start with amqp:\/\/ or amqps:\/\//);
  });

  it('takes settings from environment variables: WARREN_AMQP_URL switches to RabbitMQ', async () => {
    await requireRabbit();
    const served = await spawnServe([], { WARREN_AMQP_URL: AMQP_URL, WARREN_PUBLISH_TOKEN: TOKEN });
    try {
      assert.match(served.output(), /\(RabbitMQ amqp:\/\/guest:\*\*\*@/);
      assert.match(served.output(), /publish token: from --publish-token/);
      const health = JSON.parse(await curl([`${served.url}/_warren/health`]));
      assert.equal(health.broker, 'rabbitmq');
      const channel = `/${unique('env-')}`;
      const consumerId = unique('c-');
      await curl(['-H', `Consumer-Id: ${consumerId}`, `${served.url}${channel}?timeout=0`]);
      // publish straight to RabbitMQ with the CLI, receive through the gateway process
      const pub = await warren(['publish', channel, 'over amqp', '--amqp-url', AMQP_URL]);
      assert.equal(pub.code, 0, pub.stderr);
      assert.equal(await curl(['-H', `Consumer-Id: ${consumerId}`, `${served.url}${channel}?timeout=5`]), 'over amqp');
    } finally {
      await served.stop();
    }
  });
});

describe('warren --help and warren serve --help', () => {
  it('the top-level help names every transport, with no stale "today"', async () => {
    const r = await warren(['--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /today/);
    const description = /\n\n(Warren: [^]*?)\n\n/.exec(r.stdout)?.[1]?.replace(/\s+/g, ' ');
    assert.ok(description, r.stdout);
    for (const transport of ['Server-Sent Events', 'WebSocket', 'long-poll', 'RabbitMQ'])
      assert.ok(description.includes(transport), `${transport} in: ${description}`);
  });

  it("`warren serve --help` shows each option's default, with its unit, as the configuration table gives it", async () => {
    const r = await warren(['serve', '--help']);
    assert.equal(r.code, 0, r.stderr);
    // One entry per option: the line that starts with its flag and the deeper-indented lines that continue it.
    const entries = new Map<string, string>();
    let current: string | undefined;
    for (const line of r.stdout.split('\n')) {
      const m = /^ {2}(--[a-z-]+)\b/.exec(line);
      if (m) entries.set((current = m[1]!), line.trim());
      else if (current !== undefined && /^ {3,}\S/.test(line)) entries.set(current, `${entries.get(current)} ${line.trim()}`);
      else current = undefined;
    }
    const readme = readFileSync(join(ROOT, 'docs', 'configuration.md'), 'utf8');
    for (const spec of OPTION_SPECS) {
      const entry = entries.get(spec.flag)?.replace(/\s+/g, ' ');
      assert.ok(entry, `${spec.flag} in:\n${r.stdout}`);
      const row = new RegExp(`^\\| \`${spec.flag}\` \\| \`${spec.env}\` \\| (.+?) \\|`, 'm').exec(readme);
      assert.ok(row, `${spec.flag} in the docs/configuration.md table`);
      const documented = row[1]!.replace(/^`([^`]*)`$/, '$1');
      assert.ok(entry.includes(`(default: ${documented}, env: ${spec.env})`), `${spec.flag}: expected default ${documented} in: ${entry}`);
    }
    assert.match(entries.get('--poll-timeout')!, /^--poll-timeout <duration> .*\(default: 25s, env: WARREN_POLL_TIMEOUT\)$/);
    assert.match(entries.get('--max-message-bytes')!, /^--max-message-bytes <size> .*\(default: 256kb, env: WARREN_MAX_MESSAGE_BYTES\)$/);
    assert.match(entries.get('--reconnect-min')!, /\(default: 100ms, env: WARREN_RECONNECT_MIN\)$/);
    assert.match(entries.get('--port')!, /^--port <number> .*\(default: 4000, env: WARREN_PORT\)$/);
    assert.match(entries.get('--host')!, /\(default: all interfaces, env: WARREN_HOST\)$/);
    // How to write the units, once, after the options.
    assert.match(r.stdout, /Durations take ms, s, m, h, d \(a bare number is seconds\); sizes take kb, mb \(a bare number is bytes\)/);
  });
});

describe('the repository as a newcomer finds it', () => {
  it("`npm start` serves, curl waits, and `npx warren publish /greetings 'hi there!'` reaches it", async () => {
    const child = spawn('npm', ['start', '--', '--port', '0', '--host', '127.0.0.1', '--log-level', 'warn'], {
      cwd: ROOT,
      env: { ...process.env, WARREN_PUBLISH_TOKEN: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // npm starts node as a child: signal the whole group at the end
    });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    try {
      await until(
        () => /Warren gateway on http:\/\/localhost:(\d+) \(embedded broker\)/.test(output),
        `npm start to serve:\n${output}`,
        60_000,
      );
      const port = /Warren gateway on http:\/\/localhost:(\d+)/.exec(output)![1];
      const url = `http://127.0.0.1:${port}`;
      const received = curl([`${url}/greetings`]);
      await until(async () => JSON.parse(await curl([`${url}/_warren/health`])).status === 'ok', 'health');
      // curl's first poll creates its queue; wait until it is attached before publishing.
      const token = readFileSync(/generated, in (\S+)/.exec(output)![1]!, 'utf8').trim();
      await until(
        async () => JSON.parse(await curl(['-H', `Authorization: Bearer ${token}`, `${url}/_warren/stats`])).broker.activeConsumers === 1,
        'curl to wait',
      );
      const pub = await new Promise<{ code: number | null; err: string }>((resolve) => {
        const npx = spawn('npx', ['--no-install', 'warren', 'publish', '/greetings', 'hi there!', '--url', `http://localhost:${port}`], {
          cwd: ROOT,
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        let err = '';
        npx.stderr.on('data', (c: Buffer) => (err += c.toString()));
        npx.on('close', (code) => resolve({ code, err }));
      });
      assert.equal(pub.code, 0, pub.err);
      assert.equal(await received, 'hi there!');
    } finally {
      process.kill(-child.pid!, 'SIGTERM');
      await once(child, 'close');
    }
  });

  it('npm links the warren command and `npm start` runs `warren serve`', () => {
    assert.ok(existsSync(join(ROOT, 'node_modules', '.bin', 'warren')), 'node_modules/.bin/warren exists after npm install');
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    assert.match(pkg.scripts.start, /packages\/cli\/bin\/warren\.js serve$/);
    assert.match(pkg.scripts.test, /^node --test /);
  });
});

function tokenOf(served: Served): string {
  const m = /generated, in (\S+)/.exec(served.output());
  assert.ok(m);
  return readFileSync(m![1]!, 'utf8').trim();
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
