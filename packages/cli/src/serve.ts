import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Command, Option } from 'commander';
import {
  createGateway,
  OPTION_SPECS,
  OptionError,
  parseOptionText,
  showDefault,
  type Gateway,
  type GatewayOptions,
  type OptionSpec,
} from '@warren/gateway';
import { describeStartFailure, startFailureStatus, type StopHow } from './lifecycle.js';
import { DEFAULT_URL } from './publish.js';
import { removeTokenFile, writeTokenFile } from './token-file.js';
import { runPrimary, WorkerStartError } from './workers.js';

/** What the value of each kind of setting looks like, in `warren serve --help`. */
const PLACEHOLDERS: Partial<Record<OptionSpec['kind'], string>> = {
  integer: 'number',
  duration: 'duration',
  bytes: 'size',
  file: 'file',
  url: 'url',
  'http-url': 'url',
  secret: 'secret',
  level: 'level',
  'access-log': 'target',
  origins: 'origins',
  prefixes: 'prefixes',
  proxies: 'addresses',
  'path-template': 'path',
  method: 'method',
};

export function serveCommand(): Command {
  const command = new Command('serve').description('run the gateway (embedded broker unless --amqp-url is given)');
  command.addOption(
    new Option(
      '--config <file>',
      'a JSON file of settings named as the flags ({"port": 4000, "amqp-url": "amqp://…"}); flags and variables win',
    ).env('WARREN_CONFIG'),
  );
  const defaults = new Map<Option, string>();
  const workers = new Option('--workers <number>', WORKERS_HELP).env('WARREN_WORKERS');
  defaults.set(workers, '1');
  command.addOption(workers);
  addGatewayOptions(command, defaults);
  command.action(async (raw: Record<string, string | undefined>) => {
    let input: Record<string, unknown> = {};
    let gateway;
    try {
      const file = readConfigFile(raw.config);
      input = { ...file.settings, ...readGatewayOptions(raw) };
      const count = raw.workers !== undefined && raw.workers !== '' ? parseWorkers(raw.workers) : (file.workers ?? 1);
      const generated = input.publishToken === undefined;
      if (generated) input.publishToken = randomBytes(24).toString('base64url');
      if (count > 1) {
        await runPrimary({ count, input, generated, announce });
        return;
      }
      gateway = createGateway(input as GatewayOptions);
      const { port } = await gateway.listen();
      announce(port, gateway.options, generated ? writeTokenFile(port, gateway.options.publishToken!) : undefined);
      reloadOnSighup(gateway);
      // SIGTERM (an orchestrator's stop) drains: not ready at once, streams ended over the spread.
      // SIGINT (Ctrl-C) closes at once. Either way the process exits 0 once the gateway is closed.
      const stop = async (how: StopHow): Promise<void> => {
        if (generated) removeTokenFile(port);
        await (how === 'drain' ? gateway!.drain() : gateway!.close());
        process.exit(0);
      };
      process.once('SIGINT', () => void stop('close'));
      process.once('SIGTERM', () => void stop('drain'));
    } catch (err) {
      reportStartFailure(err, input);
      await gateway?.close().catch(() => undefined);
      process.exit(err instanceof WorkerStartError ? err.status : startFailureStatus(err));
    }
  });
  return command;
}

const WORKERS_HELP =
  'processes serving the port together (node:cluster), or auto for one per core; more than 1 needs --amqp-url; see "Workers" in docs/operations.md';

/**
 * `--workers`: a count of 1 to 256, or `auto` (or `0`) for one per core.
 * @throws OptionError for anything else
 */
export function parseWorkers(text: string): number {
  const trimmed = text.trim();
  if (trimmed === 'auto' || trimmed === '0') return availableParallelism();
  const n = /^\d+$/.test(trimmed) ? Number(trimmed) : NaN;
  if (!(n >= 1 && n <= MAX_WORKERS)) {
    throw new OptionError(`--workers / WARREN_WORKERS: "${text}" is not a number of workers (1 to ${MAX_WORKERS}, or auto: one per core)`);
  }
  return n;
}

const MAX_WORKERS = 256;

/** One option per gateway setting, its help showing the default (with its unit) and the variable. */
function addGatewayOptions(command: Command, defaults: Map<Option, string>): void {
  for (const spec of OPTION_SPECS) {
    const option = new Option(`${spec.flag} <${PLACEHOLDERS[spec.kind] ?? 'value'}>`, spec.description).env(spec.env);
    // Not option.default(): the gateway applies its own defaults, and an
    // option left unset must stay unset (an absent --host means every interface).
    const shown = showDefault(spec);
    if (shown !== undefined) defaults.set(option, shown);
    command.addOption(option);
  }
  command.configureHelp({
    // commander shows "default:" only for an option given a default value; add ours beside the variable.
    optionDescription(option) {
      const extra = [
        defaults.has(option) ? `default: ${defaults.get(option)}` : undefined,
        option.envVar === undefined ? undefined : `env: ${option.envVar}`,
      ].filter((x) => x !== undefined);
      return extra.length === 0 ? option.description : `${option.description} (${extra.join(', ')})`;
    },
  });
  command.addHelpText(
    'after',
    '\nDurations take ms, s, m, h, d (a bare number is seconds); sizes take kb, mb (a bare number is bytes).\nAn empty variable counts as unset.',
  );
}

/**
 * The gateway's options from the flags and variables commander read.
 * @throws OptionError for a value that does not parse
 */
function readGatewayOptions(raw: Record<string, string | undefined>): Record<string, unknown> {
  const input: Record<string, unknown> = {};
  for (const spec of OPTION_SPECS) {
    // commander names the value after the flag: --poll-timeout → pollTimeout
    const name = spec.flag.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    const text = raw[name];
    // An empty variable (WARREN_PUBLISH_TOKEN=) means "not set", as in most tools.
    if (text !== undefined && text !== '') input[spec.key] = parseOptionText(spec, text);
  }
  return input;
}

/**
 * The settings of a `--config` file: a JSON object whose keys are the flags'
 * names without `--` (`"poll-timeout": "25s"`, `"port": 4000`, `"workers": 2`),
 * read as the flags would be.
 * @throws OptionError for a file that cannot be read, is not such an object, or names an unknown setting
 */
export function readConfigFile(path: string | undefined): { settings: Record<string, unknown>; workers?: number } {
  if (path === undefined || path === '') return { settings: {} };
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new OptionError(`--config ${path}: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new OptionError(`--config ${path}: a JSON object of settings, e.g. {"port": 4000}`);
  }
  const out: { settings: Record<string, unknown>; workers?: number } = { settings: {} };
  for (const [name, value] of Object.entries(parsed)) {
    const spec = OPTION_SPECS.find((s) => s.flag === `--${name}`);
    if (spec === undefined && name !== 'workers')
      throw new OptionError(`--config ${path}: "${name}" is not a setting (the names are the flags', as in warren serve --help)`);
    if (typeof value !== 'string' && typeof value !== 'number')
      throw new OptionError(`--config ${path}: "${name}" must be a string or a number`);
    if (spec === undefined) out.workers = parseWorkers(String(value));
    else out.settings[spec.key] = parseOptionText(spec, String(value));
  }
  return out;
}

/**
 * With `--tls-cert`, SIGHUP reads the certificate and key again (new
 * connections get the new ones; bad files are logged and the old ones stay).
 * Without TLS, SIGHUP keeps its default: the process ends.
 */
export function reloadOnSighup(gateway: Gateway): void {
  if (gateway.options.tlsCert === undefined) return;
  process.on('SIGHUP', () => gateway.reloadTls());
}

/** What the banner shows of the settings. */
export type BannerOptions = Pick<Gateway['options'], 'amqpUrl' | 'tlsCert' | 'accessLog'>;

/**
 * The banner: where the gateway is, and the two commands to try it;
 * `tokenFile` is where a generated publish token went. With the access log
 * on stdout, stdout holds JSON lines only: the banner goes to stderr.
 */
export function announce(port: number, options: BannerOptions, tokenFile: string | undefined, workers = 1): void {
  const { amqpUrl, tlsCert } = options;
  const base = `${tlsCert === undefined ? 'http' : 'https'}://localhost:${port}`;
  const broker =
    amqpUrl === undefined
      ? 'embedded broker'
      : `RabbitMQ ${amqpUrl
          .split(',')
          .map((url) => redact(url.trim()))
          .join(', ')}`;
  const tokenNote =
    tokenFile === undefined
      ? 'publish token: from --publish-token / WARREN_PUBLISH_TOKEN'
      : `publish token: generated, in ${tokenFile} (warren publish reads it; set WARREN_PUBLISH_TOKEN to choose one)`;
  const out = options.accessLog === 'stdout' ? process.stderr : process.stdout;
  out.write(
    `Warren gateway on ${base} (${broker}${workers > 1 ? `, ${workers} workers` : ''})\n` +
      `  receive:  curl ${base}/greetings\n` +
      `  publish:  npx warren publish /greetings 'hi there!'${base === DEFAULT_URL ? '' : ` --url ${base}`}\n` +
      `  ${tokenNote}\n` +
      (tlsCert === undefined ? '' : `  tls: certificate from ${tlsCert} (SIGHUP reads it and the key again)\n`),
  );
}

/** Why the gateway could not start, on stderr. */
function reportStartFailure(err: unknown, input: Record<string, unknown>): void {
  process.stderr.write(`warren serve: ${describeStartFailure(err, input)}\n`);
}

/** The URL without its password, for printing. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return '(invalid URL)';
  }
}
