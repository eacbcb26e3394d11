import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { normalizeOptions, OPTION_SPECS, parseDuration, parseOptionText } from '@warren/gateway';
import { ROOT } from './support/index.js';
import {
  chainInstructions,
  dependsOn,
  interpolate,
  parseDockerfile,
  promqlMetrics,
  publishedPorts,
  readCompose,
  readYaml,
  serviceEnv,
  type ComposeService,
  type Instruction,
} from './support/stack.js';

/*
 * The image and the stack as files: the Dockerfile's stages and layers, and
 * docker-compose.yml with the Prometheus and Grafana files it mounts. There is
 * no Docker engine on the project's machines; test/stack-run.test.ts runs the
 * same services as processes, and replays the image's final stages.
 */

const dockerfile = parseDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));
const FINAL = dockerfile.at(-1)!.name;
const compose = readCompose();
const services = compose.services;
const WORKSPACES: string[] = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).workspaces;
const MANIFEST = /(^|\/)package(-lock)?\.json$/;

function service(name: string): ComposeService {
  assert.ok(services[name] !== undefined, `docker-compose.yml has a service ${name}`);
  return services[name]!;
}

function runs(instructions: Instruction[], pattern: RegExp): Instruction[] {
  return instructions.filter((i) => i.op === 'RUN' && pattern.test(i.text));
}

/** COPY sources from the build context (no --from). */
function contextSources(instructions: Instruction[]): string[] {
  return instructions.filter((i) => i.op === 'COPY' && i.flags.from === undefined).flatMap((i) => i.args.slice(0, -1));
}

/** The bind mounts of a service: host path (relative to the repository) → container path. */
function binds(svc: ComposeService): Map<string, string> {
  const out = new Map<string, string>();
  for (const v of svc.volumes ?? []) {
    const [source, target] = v.split(':') as [string, string];
    if (source.startsWith('.')) out.set(join(source), target);
  }
  return out;
}

describe('the Dockerfile', () => {
  it('builds with every dependency, then runs as node with production dependencies only', () => {
    const build = dockerfile[0]!;
    assert.equal(runs(build.instructions, /npm ci(?!.*--omit=dev)/).length, 1, 'the build stage installs dev dependencies');
    assert.equal(runs(build.instructions, /tsc -b/).length, 1, 'and compiles');

    const final = chainInstructions(dockerfile, FINAL);
    assert.ok(final.length > 0 && dockerfile.find((s) => s.name === FINAL)!.from !== build.name);
    assert.equal(runs(final, /npm ci .*--omit=dev/).length, 1, 'the final image installs with --omit=dev');
    assert.deepEqual(runs(final, /npm (ci|install|i)\b(?!.*--omit=dev)|tsc|npx/), [], 'and nothing else');
    assert.equal(final.filter((i) => i.op === 'USER').at(-1)?.args[0], 'node', 'the last USER is node');

    // From the build stage only the compiled JavaScript: no node_modules, sources or compiler.
    const fromBuild = final.filter((i) => i.op === 'COPY' && i.flags.from !== undefined);
    assert.ok(fromBuild.length >= 4);
    for (const copy of fromBuild) for (const src of copy.args.slice(0, -1)) assert.match(src, /\/packages\/[a-z]+\/dist$/, `${copy.text}`);
    for (const src of contextSources(final)) assert.match(src, /^(package(-lock)?\.json|packages\/[a-z]+\/(package\.json|bin))$/, src);
  });

  it('copies the package manifests before the sources in each stage that installs', () => {
    const installs = dockerfile.filter((s) => runs(s.instructions, /npm ci/).length > 0);
    assert.equal(installs.length, 2, 'the build stage and the runtime stage');
    for (const stage of installs) {
      const at = stage.instructions.findIndex((i) => i.op === 'RUN' && /npm ci/.test(i.text));
      const before = contextSources(stage.instructions.slice(0, at));
      for (const src of before) assert.match(src, MANIFEST, `${stage.name}: only manifests before npm ci, not ${src}`);
      for (const dir of WORKSPACES)
        assert.ok(before.includes(`${dir}/package.json`), `${stage.name} copies ${dir}/package.json before npm ci`);
      assert.ok(before.includes('package-lock.json'));
      const after = stage.instructions.slice(at + 1).filter((i) => i.op === 'COPY');
      assert.ok(after.length > 0, `${stage.name} copies the sources (or the build) after npm ci`);
    }
  });

  it('checks health on the liveness path, drains on SIGTERM and exposes the ports compose uses', () => {
    const final = chainInstructions(dockerfile, FINAL);
    const health = final.filter((i) => i.op === 'HEALTHCHECK');
    assert.equal(health.length, 1);
    const [node, flag, script] = health[0]!.args;
    assert.deepEqual([node, flag], ['node', '-e'], 'a node one-liner: the slim image has no curl');
    assert.match(script!, /'\/_warren\/live'/);
    assert.match(script!, /process\.env\.WARREN_PORT \|\| 4000/, 'on the port the gateway listens on');
    assert.deepEqual(final.find((i) => i.op === 'STOPSIGNAL')?.args, ['SIGTERM']);
    assert.deepEqual(final.filter((i) => i.op === 'CMD').at(-1)?.args, ['node', 'packages/cli/bin/warren.js', 'serve']);
    const exposed = final.filter((i) => i.op === 'EXPOSE').flatMap((i) => i.args.map(Number));
    const env = serviceEnv(service('gateway'));
    for (const port of [env.WARREN_PORT, env.WARREN_METRICS_PORT]) assert.ok(exposed.includes(Number(port)), `EXPOSE ${port}`);
  });

  it('.dockerignore keeps installed and built files, tests and git out of the build context', () => {
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n');
    for (const entry of ['node_modules', '**/node_modules', '**/dist', '.git', 'test', '.env']) assert.ok(ignored.includes(entry), entry);
  });
});

describe('docker-compose.yml', () => {
  it("sets only the gateway's real settings, with values it accepts, and only variables the app reads", () => {
    const env = serviceEnv(service('gateway'));
    const input: Record<string, unknown> = {};
    for (const [name, text] of Object.entries(env)) {
      const spec = OPTION_SPECS.find((s) => s.env === name);
      assert.ok(spec !== undefined, `${name} is not a Warren setting`);
      input[spec.key] = parseOptionText(spec, text);
    }
    assert.doesNotThrow(() => normalizeOptions(input));
    const app = readFileSync(join(ROOT, 'examples', 'app-in-front', 'app.mjs'), 'utf8');
    for (const name of Object.keys(serviceEnv(service('app')))) assert.ok(app.includes(`process.env.${name}`), `app.mjs reads ${name}`);
  });

  it('RabbitMQ keeps its data in a volume, restarts, has a health check and a user of its own', () => {
    const rabbit = service('rabbitmq');
    assert.ok(rabbit.volumes?.some((v) => /^[a-z-]+:\/var\/lib\/rabbitmq$/.test(v)));
    assert.ok(rabbit.hostname !== undefined, 'a fixed host name: the data directory is named after it');
    assert.equal(rabbit.restart, 'unless-stopped');
    assert.deepEqual(rabbit.healthcheck?.test, ['CMD', 'rabbitmq-diagnostics', '-q', 'ping']);
    const env = serviceEnv(rabbit);
    assert.notEqual(env.RABBITMQ_DEFAULT_USER, 'guest', 'RabbitMQ refuses guest from other hosts');
    for (const name of ['app', 'gateway']) {
      const url = new URL(serviceEnv(service(name)).WARREN_AMQP_URL!);
      assert.deepEqual(
        [url.username, url.password, url.hostname, url.port],
        [env.RABBITMQ_DEFAULT_USER, env.RABBITMQ_DEFAULT_PASS, 'rabbitmq', '5672'],
      );
    }
    // Changing a credential in one place changes it everywhere.
    const changed = interpolate(String(service('gateway').environment!.WARREN_AMQP_URL), { RABBITMQ_PASSWORD: 's3cret' });
    assert.equal(new URL(changed).password, 's3cret');
    assert.equal(interpolate(String(rabbit.environment!.RABBITMQ_DEFAULT_PASS), { RABBITMQ_PASSWORD: 's3cret' }), 's3cret');
  });

  it('the gateway waits for RabbitMQ and the app, fronts the app, keeps metrics private and drains within the grace period', () => {
    const gateway = service('gateway');
    const app = service('app');
    assert.deepEqual(dependsOn(gateway), { rabbitmq: 'service_healthy', app: 'service_healthy' });
    assert.deepEqual(dependsOn(app), { rabbitmq: 'service_healthy' });
    assert.equal(gateway.build, '.', 'the default (final) stage of the Dockerfile');
    assert.ok(typeof app.build === 'object' && dockerfile.some((s) => s.name === (app.build as { target: string }).target));
    assert.ok(app.healthcheck !== undefined && [gateway.restart, app.restart].every((r) => r === 'unless-stopped'));

    const env = serviceEnv(gateway);
    const appPort = serviceEnv(app).PORT;
    assert.equal(env.WARREN_UPSTREAM, `http://app:${appPort}`);
    assert.equal(new URL(env.WARREN_AUTH_URL!).origin, env.WARREN_UPSTREAM);
    assert.equal(serviceEnv(app).HOST, '0.0.0.0', "the app listens on the stack's network");
    assert.deepEqual(publishedPorts(app), [], 'and only the gateway reaches it');
    assert.deepEqual(publishedPorts(gateway), [Number(env.WARREN_PORT)], 'the metrics port is not published');
    assert.equal(env.WARREN_METRICS_HOST, '0.0.0.0', 'but Prometheus reaches it');

    const grace = parseDuration(gateway.stop_grace_period!);
    const shutdown = parseDuration(env.WARREN_SHUTDOWN_TIMEOUT!);
    assert.ok(parseDuration(env.WARREN_DRAIN_DELAY!) + parseDuration(env.WARREN_DRAIN_SPREAD!) <= shutdown);
    assert.ok(shutdown < grace, 'the drain ends before compose sends SIGKILL');
  });

  it("Prometheus scrapes the gateway's metrics port, Grafana reads Prometheus, and each file they read is mounted", () => {
    const prometheus = service('prometheus');
    const mounted = binds(prometheus);
    assert.equal(mounted.get('deploy/prometheus/prometheus.yml'), '/etc/prometheus/prometheus.yml');
    const config = readYaml<any>('deploy', 'prometheus', 'prometheus.yml');
    const job = config.scrape_configs.find((c: any) => c.job_name === 'warren');
    const env = serviceEnv(service('gateway'));
    assert.deepEqual(job.static_configs[0].targets, [`gateway:${env.WARREN_METRICS_PORT}`]);
    assert.equal(job.metrics_path ?? '/metrics', '/metrics');
    for (const file of config.rule_files) assert.ok([...mounted.values()].includes(file), `${file} is mounted`);

    const grafana = service('grafana');
    const datasource = readYaml<any>('deploy', 'grafana', 'provisioning', 'datasources', 'prometheus.yml').datasources[0];
    assert.equal(datasource.url, 'http://prometheus:9090');
    const provider = readYaml<any>('deploy', 'grafana', 'provisioning', 'dashboards', 'warren.yml').providers[0];
    assert.equal(binds(grafana).get('deploy/grafana/dashboards'), provider.options.path);
    for (const kind of ['datasources', 'dashboards'])
      assert.equal(binds(grafana).get(`deploy/grafana/provisioning/${kind}`), `/etc/grafana/provisioning/${kind}`);
    const dashboard = JSON.parse(readFileSync(join(ROOT, 'deploy', 'grafana', 'dashboards', 'warren.json'), 'utf8'));
    assert.ok(dashboard.panels.length >= 8);
    for (const panel of dashboard.panels) {
      assert.equal(panel.datasource.uid, datasource.uid, panel.title);
      for (const target of panel.targets) assert.ok(promqlMetrics(target.expr).length > 0, `${panel.title}: ${target.expr}`);
    }
  });

  it('declares every named volume, mounts only files that exist, and restarts every service', () => {
    for (const [name, svc] of Object.entries(services)) {
      assert.equal(svc.restart, 'unless-stopped', name);
      for (const v of svc.volumes ?? []) {
        const source = v.split(':')[0]!;
        if (source.startsWith('.')) assert.ok(existsSync(join(ROOT, source)), `${name}: ${source}`);
        else assert.ok(compose.volumes !== undefined && source in compose.volumes, `${name}: volume ${source} is declared`);
      }
      for (const dep of Object.keys(dependsOn(svc))) assert.ok(dep in services, `${name} depends on ${dep}`);
    }
  });
});
