import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ROOT, unique } from './support/index.js';

/*
 * The packages as a user gets them: `npm pack` each workspace, install the
 * tarballs in a fresh project outside the repository (and globally under a
 * temporary prefix), and run them there. Third-party dependencies come from
 * the npm cache when it has them (--prefer-offline), else from the registry.
 */

const WORKSPACES: string[] = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).workspaces;
const NAMES = WORKSPACES.map((dir) => JSON.parse(readFileSync(join(ROOT, dir, 'package.json'), 'utf8')).name as string);
/** A TypeScript user's own dev dependency, at the version the repository builds with. */
const TYPES_NODE: string = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).devDependencies['@types/node'];
const INSTALL_FLAGS = ['--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'];

/**
 * The environment of a user's shell: without what `npm test` adds
 * (npm_package_*, npm_lifecycle_*, the repository's prefix), which would make
 * npm in the temporary project act on the repository.
 */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  const keep = new Set(['npm_config_cache', 'npm_config_registry', 'npm_config_userconfig']);
  for (const [key, value] of Object.entries(process.env)) {
    if (/^npm_/i.test(key) && !keep.has(key.toLowerCase())) continue;
    if (key === 'INIT_CWD') continue;
    env[key] = value;
  }
  return { ...env, ...extra };
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end, killed after `timeoutMs`; never rejects (the caller asserts on the code). */
function run(command: string, args: string[], options: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number }): Promise<Run> {
  return new Promise((done) => {
    execFile(
      command,
      args,
      { cwd: options.cwd, env: options.env, timeout: options.timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
        const killed = err !== null && err.killed ? `\n[killed after ${options.timeoutMs} ms]` : '';
        done({ code, stdout, stderr: stderr + killed });
      },
    );
  });
}

/** A long-running child in a process group of its own, so that the whole group (npx, sh, node) can be ended. */
class Background {
  readonly child: ChildProcess;
  private out = '';
  private err = '';
  readonly exited: Promise<number | null>;

  constructor(command: string, args: string[], options: { cwd: string; env: NodeJS.ProcessEnv }) {
    this.child = spawn(command, args, { ...options, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (this.out += chunk));
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (this.err += chunk));
    this.exited = new Promise((done) => this.child.once('close', (code) => done(code)));
  }

  get stdout(): string {
    return this.out;
  }

  get stderr(): string {
    return this.err;
  }

  /** Resolves with the first match of `pattern` in stdout; rejects when the child exits first or after `timeoutMs`. */
  async waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    void this.exited.then(() => (exited = true));
    for (;;) {
      const m = pattern.exec(this.out);
      if (m) return m;
      if (exited) throw new Error(`exited (${this.child.exitCode}) before printing ${pattern}\nstdout: ${this.out}\nstderr: ${this.err}`);
      if (Date.now() > deadline) throw new Error(`nothing matched ${pattern} in ${timeoutMs} ms\nstdout: ${this.out}\nstderr: ${this.err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** SIGTERM to the group, SIGKILL after 5 s; idempotent. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const group = -this.child.pid!;
    try {
      process.kill(group, 'SIGTERM');
    } catch {
      return;
    }
    const timer = setTimeout(() => {
      try {
        process.kill(group, 'SIGKILL');
      } catch {
        // already gone
      }
    }, 5000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** Every file under `dir`, relative to it. */
function filesUnder(dir: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...filesUnder(path).map((f) => join(entry.name, f)));
    else found.push(entry.name);
  }
  return found;
}

/** The file targets of a package.json `exports` value, however nested. */
function exportTargets(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (value === null || typeof value !== 'object') return [];
  return Object.values(value).flatMap(exportTargets);
}

describe('the packages as published: npm pack, then install and run outside the repository', () => {
  const timings: string[] = [];
  const dirs: string[] = [];
  let packDir: string;
  let project: string;
  let runtimeDir: string;
  let tarballs: string[] = [];
  let packed: { name: string; filename: string; files: { path: string }[] }[] = [];
  let served: Background | undefined;
  let gatewayUrl: string;

  async function timed<T>(label: string, work: () => Promise<T>): Promise<T> {
    const start = Date.now();
    try {
      return await work();
    } finally {
      timings.push(`${label}: ${((Date.now() - start) / 1000).toFixed(1)} s`);
    }
  }

  function tempDir(prefix: string): string {
    const dir = realpathSync(mkdtempSync(join(tmpdir(), prefix)));
    dirs.push(dir);
    return dir;
  }

  before(async () => {
    packDir = tempDir('warren-tarballs-');
    project = tempDir('warren-user-project-');
    runtimeDir = tempDir('warren-runtime-');
    const pack = await timed('npm pack (5 packages)', () =>
      run('npm', ['pack', '--json', '--ignore-scripts', '--workspaces', '--pack-destination', packDir], {
        cwd: ROOT,
        env: process.env,
        timeoutMs: 120_000,
      }),
    );
    assert.equal(pack.code, 0, pack.stderr);
    packed = JSON.parse(pack.stdout);
    tarballs = packed.map((p) => join(packDir, p.filename));
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'a-user-project', private: true, type: 'module' }, null, 2));
    const install = await timed('npm install of the tarballs', () =>
      run('npm', ['install', ...INSTALL_FLAGS, ...tarballs, `@types/node@${TYPES_NODE}`], {
        cwd: project,
        env: userEnv(),
        timeoutMs: 300_000,
      }),
    );
    assert.equal(install.code, 0, install.stderr);
  });

  after(async () => {
    await served?.stop();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    process.stderr.write(`# packages.test timings: ${timings.join('; ')}\n`);
  });

  it('npm pack makes one tarball per workspace, holding only what runs, its sources, README and LICENSE', () => {
    assert.deepEqual(packed.map((p) => p.name).sort(), [...NAMES].sort());
    for (const { name, files } of packed) {
      const paths = files.map((f) => f.path);
      for (const needed of ['package.json', 'README.md', 'LICENSE', 'dist/index.js', 'dist/index.d.ts']) {
        assert.ok(paths.includes(needed), `${name} lacks ${needed}: ${paths.join(' ')}`);
      }
      const stray = paths.filter((p) => !/^(dist|src|bin)\//.test(p) && !['package.json', 'README.md', 'LICENSE'].includes(p));
      assert.deepEqual(stray, [], `${name} ships files that do not run`);
      assert.deepEqual(
        paths.filter((p) => /tsbuildinfo|tsconfig|\.test\.|(^|\/)test\//.test(p)),
        [],
        `${name} ships build or test files`,
      );
    }
  });

  it('the project is outside the repository and each @warren package came from its tarball, none from a registry', () => {
    assert.ok(relative(ROOT, project).startsWith('..') || isAbsolute(relative(ROOT, project)), project);
    const lock = JSON.parse(readFileSync(join(project, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { version?: string; resolved?: string; link?: boolean }>;
    };
    for (const name of NAMES) {
      const entry = lock.packages[`node_modules/${name}`];
      assert.ok(entry, `${name} is not installed`);
      assert.ok(entry.resolved?.startsWith('file:') && entry.resolved.endsWith('.tgz'), `${name} resolved from ${entry.resolved}`);
      assert.notEqual(entry.link, true, `${name} is a link`);
    }
    const nested = Object.keys(lock.packages).filter((key) => /node_modules\/@warren\/.+\/node_modules\/@warren\//.test(key));
    assert.deepEqual(nested, [], 'an inter-package range did not accept the packed version');
  });

  it('each installed package has public publishConfig, its engines, semver ranges for its @warren dependencies, and exports that exist', () => {
    for (const name of NAMES) {
      const dir = join(project, 'node_modules', name);
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
      assert.equal(pkg.license, 'MIT', name);
      assert.match(readFileSync(join(dir, 'LICENSE'), 'utf8'), /^MIT License/, name);
      assert.deepEqual(pkg.publishConfig, { access: 'public' }, name);
      if (name === '@warren/client') {
        assert.equal(pkg.engines, undefined, 'the browser client names no Node version');
        assert.equal(pkg.dependencies, undefined, 'the browser client has no dependencies');
      } else {
        assert.deepEqual(pkg.engines, { node: '>=20.18.1' }, name);
      }
      for (const [dep, range] of Object.entries<string>(pkg.dependencies ?? {})) {
        assert.match(range, /^\^\d+\.\d+\.\d+$/, `${name} depends on ${dep}@${range}`);
        if (dep.startsWith('@warren/')) {
          const version = JSON.parse(readFileSync(join(project, 'node_modules', dep, 'package.json'), 'utf8')).version;
          assert.equal(range, `^${version}`, `${name} → ${dep}`);
        }
      }
      const targets = [pkg.main, pkg.types, ...exportTargets(pkg.exports), ...Object.values<string>(pkg.bin ?? {})];
      assert.ok(targets.length >= 3, name);
      for (const target of targets) assert.ok(existsSync(join(dir, target)), `${name}: ${target} does not exist`);
    }
  });

  it('every source map (JavaScript and declarations) of every package points at files the package holds', () => {
    let maps = 0;
    for (const name of NAMES) {
      const dir = join(project, 'node_modules', name);
      for (const file of filesUnder(join(dir, 'dist'))) {
        const path = join(dir, 'dist', file);
        const comment = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(
          file.endsWith('.js') || file.endsWith('.d.ts') ? readFileSync(path, 'utf8') : '',
        );
        if (comment) assert.ok(existsSync(resolve(dirname(path), comment[1]!)), `${name}/dist/${file} → ${comment[1]}`);
        if (!file.endsWith('.map')) continue;
        maps++;
        const map = JSON.parse(readFileSync(path, 'utf8')) as { sourceRoot?: string; sources: string[] };
        for (const source of map.sources) {
          const target = resolve(dirname(path), map.sourceRoot ?? '', source);
          assert.ok(existsSync(target), `${name}/dist/${file} → ${source}`);
          assert.ok(target.startsWith(dir + '/'), `${name}/dist/${file} points outside the package: ${source}`);
        }
      }
    }
    assert.ok(maps > 50, `only ${maps} maps`);
  });

  it('npx warren serve --port 0 starts with the embedded broker, npx warren publish reaches it and curl receives the message', async () => {
    served = new Background('npx', ['--no', 'warren', 'serve', '--port', '0', '--host', '127.0.0.1'], {
      cwd: project,
      env: userEnv({ XDG_RUNTIME_DIR: runtimeDir }),
    });
    const banner = await timed('npx warren serve until its banner', () =>
      served!.waitFor(/Warren gateway on http:\/\/localhost:(\d+) \(embedded broker\)[\s\S]*publish token: generated, in (\S+)/, 30_000),
    );
    gatewayUrl = `http://127.0.0.1:${banner[1]}`;
    assert.equal(banner[2], join(runtimeDir, `warren-${banner[1]}.token`));
    const consumer = unique('curl-');
    const channel = `${gatewayUrl}/greetings?consumer_id=${consumer}`;
    // The consumer's queue is made by its first poll; timeout=0 answers at once.
    const first = await run('curl', ['-sS', '-m', '10', '-o', '/dev/null', '-w', '%{http_code}', `${channel}&timeout=0`], {
      cwd: project,
      env: userEnv(),
      timeoutMs: 15_000,
    });
    assert.equal(first.stdout, '204', first.stderr);
    const published = await timed('npx warren publish', () =>
      run('npx', ['--no', 'warren', 'publish', '/greetings', 'hi there!', '--url', gatewayUrl], {
        cwd: project,
        env: userEnv({ XDG_RUNTIME_DIR: runtimeDir }),
        timeoutMs: 30_000,
      }),
    );
    assert.equal(published.code, 0, published.stderr);
    assert.match(published.stdout, /^[0-9a-f-]{36}\n$/);
    const received = await run('curl', ['-sS', '-m', '20', '-D', '-', `${channel}&timeout=10`], {
      cwd: project,
      env: userEnv(),
      timeoutMs: 25_000,
    });
    assert.equal(received.code, 0, received.stderr);
    assert.match(received.stdout, /^HTTP\/1\.1 200 /);
    assert.match(received.stdout, new RegExp(`\\r\\nmessage-id: ${published.stdout.trim()}\\r\\n`, 'i'));
    assert.ok(received.stdout.endsWith('\r\n\r\nhi there!'), received.stdout);
  });

  it('a page-like script imports @warren/client in Node ESM, with no import outside the package, and receives what a script using @warren/producer publishes over HTTP', async () => {
    assert.ok(gatewayUrl, 'the gateway of the previous test is running');
    const log = join(project, 'client-imports.log');
    writeFileSync(
      join(project, 'only-relative-imports.mjs'),
      `import { appendFileSync } from 'node:fs';
let log;
export function initialize(data) { log = data.log; }
// Every import made by a module of @warren/client must be relative: a browser has no node_modules and no node: modules.
export async function resolve(specifier, context, next) {
  if (context.parentURL?.includes('/node_modules/@warren/client/')) {
    appendFileSync(log, context.parentURL + ' ' + specifier + '\\n');
    if (!/^\\.\\.?\\//.test(specifier)) throw new Error('@warren/client imports ' + specifier + ' from ' + context.parentURL);
  }
  return next(specifier, context);
}
`,
    );
    writeFileSync(
      join(project, 'page.mjs'),
      `import { register } from 'node:module';
register('./only-relative-imports.mjs', { parentURL: import.meta.url, data: { log: ${JSON.stringify(log)} } });
const [url, channel] = process.argv.slice(2);
console.log('entry ' + import.meta.resolve('@warren/client'));
const { WarrenClient } = await import('@warren/client');
const client = new WarrenClient({ url, transports: ['long-poll'], storage: null, WebSocket: null, EventSource: null, pollTimeoutSeconds: 5 });
client.on('open', ({ transport }) => console.log('open ' + transport));
client.on('error', (error) => console.error('client error', error.code, error.message));
client.subscribe(channel, (message) => {
  console.log('message ' + JSON.stringify({ id: message.id, data: message.data }));
  client.close();
});
`,
    );
    writeFileSync(
      join(project, 'job.mjs'),
      `import { Producer } from '@warren/producer';
const [url, channel, text] = process.argv.slice(2);
const producer = new Producer({ url }); // the token: from the file warren serve wrote
const result = await producer.publish(text).to(channel);
await producer.close();
console.log(JSON.stringify(result));
`,
    );
    const channel = `/${unique('page-')}`;
    const page = new Background(process.execPath, ['page.mjs', gatewayUrl, channel], { cwd: project, env: userEnv() });
    try {
      const entry = await page.waitFor(/^entry (\S+)$/m, 10_000);
      assert.ok(fileURLToPath(entry[1]!).startsWith(join(project, 'node_modules', '@warren', 'client') + '/'), entry[1]);
      await page.waitFor(/^open long-poll$/m, 15_000);
      const job = await timed('node job.mjs (@warren/producer over HTTP)', () =>
        run(process.execPath, ['job.mjs', gatewayUrl, channel, 'from a job'], {
          cwd: project,
          env: userEnv({ XDG_RUNTIME_DIR: runtimeDir }),
          timeoutMs: 30_000,
        }),
      );
      assert.equal(job.code, 0, job.stderr);
      const result = JSON.parse(job.stdout) as { id: string; channels: string[] };
      assert.deepEqual(result.channels, [channel]);
      const message = await page.waitFor(/^message (.+)$/m, 15_000);
      assert.deepEqual(JSON.parse(message[1]!), { id: result.id, data: 'from a job' });
      assert.equal(await Promise.race([page.exited, new Promise((r) => setTimeout(() => r('still running'), 10_000))]), 0, page.stderr);
    } finally {
      await page.stop();
    }
    const imports = readFileSync(log, 'utf8').trim().split('\n');
    const modules = new Set(imports.map((line) => line.split(' ')[0]));
    // The hook saw the client's graph (index → client → transports …), not nothing.
    assert.ok(modules.size >= 5, imports.join('\n'));
    for (const line of imports) assert.match(line.split(' ')[1]!, /^\.\.?\//, line);
  });

  it('a TypeScript project (strict, NodeNext, skipLibCheck off) type-checks against the installed declarations', async () => {
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          target: 'ES2022',
          strict: true,
          skipLibCheck: false,
          noEmit: true,
          types: ['node'],
        },
        files: ['user.ts'],
      }),
    );
    writeFileSync(
      join(project, 'user.ts'),
      `import { parseChannel, type WarrenMessage } from '@warren/protocol';
import { Producer, type PublishResult } from '@warren/producer';
import { createGateway, type Gateway } from '@warren/gateway';
import { main } from '@warren/cli';
import { WarrenClient, type WarrenMessage as ClientMessage } from '@warren/client';
import { parseServerFrame } from '@warren/client/internal';

const channel: string = parseChannel('/greetings');
const gateway: Gateway = createGateway({ port: 0 });
const producer = new Producer({ url: 'http://127.0.0.1:4000', token: 't' });
const publishing: Promise<PublishResult> = producer.publish('hi').to(channel);
const client = new WarrenClient({ url: 'http://127.0.0.1:4000' });
client.subscribe(channel, (m: ClientMessage) => m.data.length);
export const used: unknown[] = [gateway, publishing, main, parseServerFrame, {} as WarrenMessage];
// @ts-expect-error: the declarations are real, not any: parseChannel returns a string
export const wrong: number = parseChannel('/x');
`,
    );
    const tsc = await timed('tsc on a user project', () =>
      run(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', project], {
        cwd: project,
        env: userEnv(),
        timeoutMs: 120_000,
      }),
    );
    assert.equal(tsc.code, 0, tsc.stdout + tsc.stderr);
  });

  it('the CLI installed globally (npm install -g --prefix) runs as <prefix>/bin/warren', async () => {
    const prefix = tempDir('warren-global-');
    const install = await timed('npm install -g of the tarballs', () =>
      run('npm', ['install', '-g', '--prefix', prefix, ...INSTALL_FLAGS, ...tarballs], { cwd: prefix, env: userEnv(), timeoutMs: 300_000 }),
    );
    assert.equal(install.code, 0, install.stderr);
    const lib = join(prefix, 'lib', 'node_modules', '@warren');
    assert.deepEqual(readdirSync(lib).sort(), NAMES.map((n) => n.slice('@warren/'.length)).sort());
    assert.ok(!existsSync(join(lib, 'cli', 'node_modules', '@warren')), 'the CLI fetched its own copy of a @warren package');
    const bin = join(prefix, 'bin', 'warren');
    assert.ok(statSync(bin).mode & 0o111, 'executable');
    const help = await run(bin, ['--help'], { cwd: prefix, env: userEnv(), timeoutMs: 20_000 });
    assert.equal(help.code, 0, help.stderr);
    for (const command of ['serve', 'publish', 'listen']) assert.match(help.stdout, new RegExp(`^ +${command}\\b`, 'm'));
  });
});
