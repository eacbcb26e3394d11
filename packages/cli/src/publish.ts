import { Command, Option } from 'commander';
import { Producer, readTokenFile, tokenFileFor, type ProducerOptions } from '@warren/producer';
import { WarrenError, type MessageData } from '@warren/protocol';

export const DEFAULT_URL = 'http://localhost:4000';

interface PublishFlags {
  url: string;
  amqpUrl?: string;
  token?: string;
  exchange?: string;
  event?: string;
  id?: string;
  contentType?: string;
  json?: boolean;
}

export function publishCommand(): Command {
  return new Command('publish')
    .description('publish a message to a channel (over HTTP through the gateway, or straight to RabbitMQ with --amqp-url)')
    .argument('<channel>', 'channel path, e.g. /greetings')
    .argument('[message]', 'the message; read from standard input when absent (one trailing newline removed)')
    .addOption(new Option('--url <url>', 'gateway URL').env('WARREN_URL').default(DEFAULT_URL))
    .addOption(new Option('--amqp-url <url>', 'publish straight to RabbitMQ instead').env('WARREN_AMQP_URL'))
    .addOption(
      new Option('--token <token>', 'publish token (default: the file written by warren serve on this machine)').env(
        'WARREN_PUBLISH_TOKEN',
      ),
    )
    .addOption(new Option('--exchange <name>', 'exchange, with --amqp-url').env('WARREN_EXCHANGE'))
    .option('--event <name>', 'event name')
    .option('--id <id>', 'message id (generated when absent)')
    .option('--content-type <type>', 'content type (default: text/plain; charset=utf-8)')
    .option('--json', 'the message is JSON: check it and send it as application/json')
    .action(async (channel: string, text: string | undefined, flags: PublishFlags) => {
      const body = text ?? (await readStdin());
      let data: MessageData = body;
      if (flags.json) {
        try {
          data = JSON.parse(body) as MessageData;
        } catch (err) {
          fail(`--json: the message is not JSON (${(err as Error).message})`);
        }
      }
      // The gateway (or RabbitMQ) enforces the real size limit; the SDK's own
      // default check would refuse what a gateway configured larger accepts.
      const options: ProducerOptions = { url: flags.amqpUrl ?? flags.url, maxMessageBytes: 64 * 1024 * 1024 };
      if (flags.exchange !== undefined) options.exchange = flags.exchange;
      const url = flags.amqpUrl === undefined ? parseUrl(flags.url) : undefined;
      if (url?.protocol === 'http:' || url?.protocol === 'https:') {
        // The producer would look in the same places; looking here lets the advice name the flag.
        const file = tokenFileFor(url);
        const token = flags.token || (file === undefined ? undefined : readTokenFile(file));
        if (token === undefined) {
          fail(
            `no publish token for ${flags.url}: give --token or set WARREN_PUBLISH_TOKEN${file === undefined ? '' : `, or start that gateway with \`warren serve\` on this machine (it writes ${file})`}`,
          );
        }
        options.token = token;
      }
      let producer: Producer;
      try {
        producer = new Producer(options);
      } catch (err) {
        return fail((err as Error).message);
      }
      try {
        const result = await producer
          .publish(data, {
            ...(flags.event === undefined ? {} : { event: flags.event }),
            ...(flags.id === undefined ? {} : { id: flags.id }),
            ...(flags.contentType === undefined ? {} : { contentType: flags.contentType }),
          })
          .to(channel);
        process.stdout.write(`${result.id}\n`);
        // On standard error: the id on standard output stays all a script reads.
        if (!result.routed) process.stderr.write(`warren: nobody got ${result.id}: no queue or log is bound to ${channel}\n`);
      } catch (err) {
        if (err instanceof WarrenError) fail(`${err.code}: ${err.message}`);
        throw err;
      } finally {
        await producer.close();
      }
    });
}

function parseUrl(text: string): URL {
  try {
    return new URL(text);
  } catch {
    return fail(`--url ${JSON.stringify(text)} is not a URL`);
  }
}

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) fail('give the message as an argument, or pipe it on standard input');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

export function fail(message: string): never {
  process.stderr.write(`warren: ${message}\n`);
  process.exit(1);
}
