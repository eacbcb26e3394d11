import { randomBytes } from 'node:crypto';
import { Command, Option } from 'commander';
import {
  createGateway,
  OPTION_SPECS,
  OptionError,
  parseOptionText,
  showDefault,
  type GatewayOptions,
  type OptionSpec,
} from '@warren/gateway';
import { removeTokenFile, writeTokenFile } from './token-file.js';

/** What the value of each kind of setting looks like, in `warren serve --help`. */
const PLACEHOLDERS: Partial<Record<OptionSpec['kind'], string>> = {
  integer: 'number',
  duration: 'duration',
  bytes: 'size',
  url: 'url',
  'http-url': 'url',
  secret: 'secret',
  level: 'level',
  origins: 'origins',
  prefixes: 'prefixes',
  proxies: 'addresses',
  'path-template': 'path',
  method: 'method',
};

export function serveCommand(): Command {
  const command = new Command('serve').description('run the gateway (embedded broker unless --amqp-url is given)');
  const defaults = new Map<Option, string>();
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
  command.action(async (raw: Record<string, string | undefined>) => {
    const input: Record<string, unknown> = {};
    let gateway;
    try {
      for (const spec of OPTION_SPECS) {
        // commander names the value after the flag: --poll-timeout → pollTimeout
        const name = spec.flag.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
        const text = raw[name];
        // An empty variable (WARREN_PUBLISH_TOKEN=) means "not set", as in most tools.
        if (text !== undefined && text !== '') input[spec.key] = parseOptionText(spec, text);
      }
      const generated = input.publishToken === undefined;
      if (generated) input.publishToken = randomBytes(24).toString('base64url');
      gateway = createGateway(input as GatewayOptions);
      const address = await gateway.listen();
      const port = address.port;
      let tokenNote: string;
      if (generated) {
        const path = writeTokenFile(port, gateway.options.publishToken!);
        tokenNote = `publish token: generated, in ${path} (warren publish reads it; set WARREN_PUBLISH_TOKEN to choose one)`;
      } else {
        tokenNote = 'publish token: from --publish-token / WARREN_PUBLISH_TOKEN';
      }
      const base = `http://localhost:${port}`;
      const broker = gateway.options.amqpUrl === undefined ? 'embedded broker' : `RabbitMQ ${redact(gateway.options.amqpUrl)}`;
      process.stdout.write(
        `Warren gateway on ${base} (${broker})\n` +
          `  receive:  curl ${base}/greetings\n` +
          `  publish:  npx warren publish /greetings 'hi there!'${port === 4000 ? '' : ` --url ${base}`}\n` +
          `  ${tokenNote}\n`,
      );
      const stop = async (): Promise<void> => {
        if (generated) removeTokenFile(port);
        await gateway!.close();
        process.exit(0);
      };
      process.once('SIGINT', () => void stop());
      process.once('SIGTERM', () => void stop());
    } catch (err) {
      if (err instanceof OptionError) {
        process.stderr.write(`warren serve: ${err.message}\n`);
        process.exit(2);
      }
      const code = (err as NodeJS.ErrnoException).code;
      const where = `${String(input.host ?? 'all interfaces')} port ${String(input.port ?? 4000)}`;
      if (code === 'EADDRINUSE') {
        process.stderr.write(`warren serve: ${where} is in use (choose another with --port or WARREN_PORT)\n`);
      } else if (code === 'ENOTFOUND' || code === 'EADDRNOTAVAIL' || code === 'EACCES' || code === 'EAI_AGAIN') {
        process.stderr.write(`warren serve: cannot listen on ${where} (${code}); check --host / WARREN_HOST and --port / WARREN_PORT\n`);
      } else {
        process.stderr.write(`warren serve: ${(err as Error).message}\n`);
      }
      await gateway?.close().catch(() => undefined);
      process.exit(1);
    }
  });
  return command;
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
