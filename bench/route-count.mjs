// What a route count costs a producer (issue 16 item 2): publishes per
// second of the producer SDK over AMQP without and with `managementUrl` (one
// listing of the exchange's bindings per `routeCountMaxAgeMs`, shared by the
// publishes in flight), for a fixed time each, the two alternating round
// after round because others share the machine. Also times one listing.
//
//   npm run build && node bench/route-count.mjs [--seconds 10] [--rounds 3] [--window 64] [--bindings 1000] [--max-age 1000]
//
// Needs RabbitMQ on 127.0.0.1:5672 (WARREN_BENCH_AMQP_URL) with its management
// plugin (WARREN_BENCH_MANAGEMENT_URL, http://guest:guest@127.0.0.1:15672).
// Declares the exchange bench-rc-<run> with one durable queue bound to the
// channel published to and `--bindings` exclusive queues bound to other keys
// (more bindings for each listing to carry); all deleted at the end.
import { parseArgs } from 'node:util';
import amqp from 'amqplib';
import { EXCHANGE_TYPE, RouteCounts } from '@warren/protocol';
import { Producer } from '@warren/producer';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    window: { type: 'string', default: '64' },
    size: { type: 'string', default: '100' },
    bindings: { type: 'string', default: '1000' },
    'max-age': { type: 'string', default: '1000' },
  },
});
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const WINDOW = Number(values.window);
const BINDINGS = Number(values.bindings);
const MAX_AGE = Number(values['max-age']);
const BODY = Buffer.alloc(Number(values.size), 'x');
const AMQP = process.env.WARREN_BENCH_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const MANAGEMENT = process.env.WARREN_BENCH_MANAGEMENT_URL ?? 'http://guest:guest@127.0.0.1:15672';
const RUN = Date.now().toString(36);
const EXCHANGE = `bench-rc-${RUN}`;
const CHANNEL = `/bench-rc/routed`;
const QUEUE = `bench-rc-${RUN}`;

/** Keeps `WINDOW` publishes unconfirmed for `SECONDS`; resolves with messages per second and the last result. */
async function rate(producer) {
  let done = 0;
  let last;
  const t0 = performance.now();
  const end = t0 + SECONDS * 1000;
  await new Promise((resolve, reject) => {
    let open = 0;
    const next = () => {
      if (performance.now() >= end) return open === 0 ? resolve() : undefined;
      open++;
      producer
        .publish(BODY)
        .to(CHANNEL)
        .then((r) => {
          last = r;
          done++;
          open--;
          next();
        }, reject);
    };
    for (let k = 0; k < WINDOW; k++) next();
  });
  return { rate: done / ((performance.now() - t0) / 1000), last };
}

const conn = await amqp.connect(AMQP, { noDelay: true });
const ch = await conn.createChannel();
await ch.assertExchange(EXCHANGE, EXCHANGE_TYPE, { durable: true });
await ch.assertQueue(QUEUE, { durable: true, arguments: { 'x-max-length': 1000, 'x-overflow': 'drop-head' } });
await ch.bindQueue(QUEUE, EXCHANGE, CHANNEL);
for (let i = 0; i < BINDINGS; i++) {
  const { queue } = await ch.assertQueue('', { exclusive: true, arguments: { 'x-max-length': 1 } });
  await ch.bindQueue(queue, EXCHANGE, `/bench-rc/other-${i}`);
}

// One listing, timed alone (a new RouteCounts lists on its first count).
const listings = [];
for (let i = 0; i < 5; i++) {
  const counts = new RouteCounts({ managementUrl: MANAGEMENT, amqpUrl: AMQP, exchange: EXCHANGE });
  const t = performance.now();
  const n = await counts.count(CHANNEL);
  listings.push(performance.now() - t);
  if (n !== 1) throw new Error(`the listing counted ${n} queues on ${CHANNEL}, not 1`);
}

const variants = [
  ['producer SDK over AMQP', () => new Producer({ url: AMQP, exchange: EXCHANGE })],
  [
    `producer SDK over AMQP, managementUrl (max age ${MAX_AGE} ms)`,
    () => new Producer({ url: AMQP, exchange: EXCHANGE, managementUrl: MANAGEMENT, routeCountMaxAgeMs: MAX_AGE }),
  ],
];
const results = new Map();
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, make] of variants) {
      const producer = make();
      await producer.publish('warm').to(CHANNEL);
      const { rate: r, last } = await rate(producer);
      await producer.close();
      if (name.includes('managementUrl') && last?.queues !== 1) throw new Error(`no count: ${JSON.stringify(last)}`);
      results.set(name, [...(results.get(name) ?? []), r]);
      process.stderr.write(`round ${round + 1}: ${name}: ${r.toFixed(0)}/s\n`);
    }
  }
} finally {
  await ch.deleteQueue(QUEUE);
  await ch.deleteExchange(EXCHANGE);
  await conn.close();
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(
  `${SECONDS} s a run, ${BODY.length} B persistent messages to 1 durable queue, ${WINDOW} unconfirmed; ` +
    `${BINDINGS + 1} bindings on the exchange; ${ROUNDS} rounds`,
);
console.log(`one listing of the bindings, 5 times: ${listings.map((ms) => ms.toFixed(0)).join(', ')} ms`);
console.log('| publisher | msg/s per round | median |');
console.log('|---|---|---|');
for (const [name, rs] of results) console.log(`| ${name} | ${rs.map((r) => r.toFixed(0)).join(', ')} | ${median(rs).toFixed(0)} |`);
