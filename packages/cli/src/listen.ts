import { setTimeout as sleep } from 'node:timers/promises';
import { Command, Option } from 'commander';
import { request } from 'undici';
import { readTokenFile, tokenFileFor } from '@warren/producer';
import { HEADERS, parseChannel, parseConsumerId, parseSince, PATHS, WarrenError } from '@warren/protocol';
import { DEFAULT_URL, fail } from './publish.js';

interface ListenFlags {
  url: string;
  consumerId?: string;
  count?: string;
  timeout: string;
  since?: string;
  missed?: boolean;
  token?: string;
}

/**
 * A long-poll consumer: prints each message body on its own line, keeps its
 * consumer id from poll to poll, and waits out broker outages.
 */
export function listenCommand(): Command {
  return new Command('listen')
    .description('long-poll a channel and print each message on its own line (or, with --missed, what consumers missed)')
    .argument('[channel]', 'channel path, e.g. /greetings (with --missed: only this channel)')
    .addOption(new Option('--url <url>', 'gateway URL').env('WARREN_URL').default(DEFAULT_URL))
    .addOption(new Option('--consumer-id <id>', 'consumer id (default: the one the gateway assigns)').env('WARREN_CONSUMER_ID'))
    .option('--count <n>', 'exit after this many messages')
    .option('--timeout <seconds>', 'long-poll timeout asked of the gateway', '25')
    .option(
      '--since <id>',
      'on a logged channel: start after this event id, or from a time (ISO 8601 or epoch ms); then resume from each id received',
    )
    .option(
      '--missed',
      'print what consumers of audited channels missed (consumer, channel, reason, time, id, body; tab-separated), filtered by [channel] and --consumer-id, then exit',
    )
    .addOption(
      new Option('--token <token>', 'publish token, with --missed (default: the file written by warren serve on this machine)').env(
        'WARREN_PUBLISH_TOKEN',
      ),
    )
    .action(async (channelArg: string | undefined, flags: ListenFlags) => {
      if (flags.missed) return listMissed(channelArg, flags);
      if (channelArg === undefined) return fail('name a channel, e.g. warren listen /greetings');
      let channel: string;
      let consumerId: string | undefined;
      try {
        channel = parseChannel(channelArg);
        if (flags.consumerId !== undefined) consumerId = parseConsumerId(flags.consumerId);
        if (flags.since !== undefined) parseSince(flags.since);
      } catch (err) {
        return fail((err as WarrenError).message);
      }
      const count = flags.count === undefined ? Infinity : Number(flags.count);
      if (!(count >= 1) || !Number.isInteger(count === Infinity ? 1 : count)) fail('--count must be a whole number from 1');
      const timeout = Number(flags.timeout);
      if (!(timeout >= 0)) fail('--timeout must be a number of seconds');
      let base: URL;
      try {
        base = new URL(flags.url);
      } catch {
        return fail(`--url ${JSON.stringify(flags.url)} is not a URL`);
      }
      if (base.protocol !== 'http:' && base.protocol !== 'https:') fail('--url must start with http:// or https://');
      const stop = new AbortController();
      process.once('SIGINT', () => stop.abort());
      let received = 0;
      let failures = 0;
      let announced = false;
      let since = flags.since;
      while (received < count && !stop.signal.aborted) {
        const url = new URL(channel, base);
        url.searchParams.set('timeout', String(timeout));
        if (since !== undefined) url.searchParams.set('since', since);
        try {
          const res = await request(url, {
            headers: consumerId === undefined ? {} : { [HEADERS.consumerId]: consumerId },
            signal: stop.signal,
            headersTimeout: (timeout + 30) * 1000,
            bodyTimeout: (timeout + 30) * 1000,
          });
          const body = Buffer.from(await res.body.arrayBuffer());
          const given = res.headers[HEADERS.consumerId];
          if (typeof given === 'string') consumerId = given;
          if (!announced && consumerId !== undefined) {
            process.stderr.write(`warren: listening on ${channel} as consumer ${consumerId}\n`);
            announced = true;
          }
          failures = 0;
          if (res.statusCode === 200) {
            received++;
            since = nextSince(since, res.headers[HEADERS.messageId]);
            process.stdout.write(Buffer.concat([body, Buffer.from('\n')]));
          } else if (res.statusCode === 503) {
            await sleep(Number(res.headers['retry-after'] ?? 1) * 1000, undefined, { signal: stop.signal }).catch(() => undefined);
          } else if (res.statusCode === 409) {
            // Our own polls follow each other, so another poller took over this consumer's queue.
            fail(
              `another poll for consumer ${consumerId ?? '?'} on ${channel} took over (409 POLL_SUPERSEDED); give each listener its own --consumer-id`,
            );
          } else if (res.statusCode !== 204) {
            fail(`gateway answered ${res.statusCode}: ${body.toString('utf8')}`);
          }
        } catch (err) {
          if (stop.signal.aborted) break;
          failures++;
          const delay = Math.min(5000, 100 * 2 ** failures);
          process.stderr.write(`warren: ${(err as Error).message}; retrying in ${delay} ms\n`);
          await sleep(delay);
        }
      }
    });
}

/** With `--since`, each poll resumes after the last message received (its id), once there is one. */
function nextSince(since: string | undefined, id: string | string[] | undefined): string | undefined {
  return since !== undefined && typeof id === 'string' && id !== '' ? id : since;
}

interface MissedLine {
  consumer: string;
  channel: string;
  reason: string;
  time: string;
  id: string;
  body: string;
  encoding: 'utf8' | 'base64';
}

/**
 * `warren listen --missed`: pages through `GET /_warren/missed` and prints
 * one tab-separated line per missed message (a body with a tab or newline is
 * printed as JSON, a binary one as `base64:<data>`).
 */
async function listMissed(channelArg: string | undefined, flags: ListenFlags): Promise<void> {
  const query = new URLSearchParams();
  try {
    if (channelArg !== undefined) query.set('channel', parseChannel(channelArg));
    if (flags.consumerId !== undefined) query.set('consumer', parseConsumerId(flags.consumerId));
  } catch (err) {
    return fail((err as WarrenError).message);
  }
  const count = flags.count === undefined ? Infinity : Number(flags.count);
  if (!(count >= 1) || !Number.isInteger(count === Infinity ? 1 : count)) fail('--count must be a whole number from 1');
  if (flags.since !== undefined) query.set('since', flags.since);
  let base: URL;
  try {
    base = new URL(flags.url);
  } catch {
    return fail(`--url ${JSON.stringify(flags.url)} is not a URL`);
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') fail('--url must start with http:// or https://');
  const file = tokenFileFor(base);
  const token = flags.token || (file === undefined ? undefined : readTokenFile(file));
  if (token === undefined) fail(`no publish token for ${flags.url}: give --token or set WARREN_PUBLISH_TOKEN`);
  let printed = 0;
  for (;;) {
    query.set('limit', String(Math.min(1000, count - printed)));
    const url = new URL(`${PATHS.missed}?${query}`, base);
    let res;
    try {
      res = await request(url, { headers: { authorization: `Bearer ${token}` } });
    } catch (err) {
      return fail(`cannot reach ${flags.url}: ${(err as Error).message}`);
    }
    const text = await res.body.text();
    if (res.statusCode !== 200) return fail(`gateway answered ${res.statusCode}: ${text}`);
    const page = JSON.parse(text) as { missed: MissedLine[]; next?: number };
    for (const entry of page.missed) {
      const body =
        entry.encoding === 'base64' ? `base64:${entry.body}` : /[\t\r\n]/.test(entry.body) ? JSON.stringify(entry.body) : entry.body;
      process.stdout.write(`${[entry.consumer, entry.channel, entry.reason, entry.time, entry.id, body].join('\t')}\n`);
      printed++;
    }
    if (page.next === undefined || printed >= count) return;
    query.set('after', String(page.next));
  }
}
