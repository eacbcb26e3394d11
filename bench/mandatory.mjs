// What it costs to learn whether a publish was routed (issue 16 item 2):
// publishes to RabbitMQ with and without the `mandatory` flag, to a channel a
// queue is bound to and to one nothing is bound to, plus the producer SDK
// (mandatory on every publish, returns matched to confirms). Variants
// alternate, round after round, because others share the machine.
//
//   npm run build && node bench/mandatory.mjs [--messages 5000] [--rounds 3] [--window 64]
//
// Needs RabbitMQ on 127.0.0.1:5672 (WARREN_BENCH_AMQP_URL). Declares one
// queue bench-mandatory-<run>, deleted at the end.
import { parseArgs } from 'node:util';
import amqp from 'amqplib';
import { DEFAULT_EXCHANGE, EXCHANGE_TYPE, toWireProperties } from '@warren/protocol';
import { Producer } from '@warren/producer';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '5000' },
    rounds: { type: 'string', default: '3' },
    window: { type: 'string', default: '64' },
    size: { type: 'string', default: '100' },
  },
});
const M = Number(values.messages);
const ROUNDS = Number(values.rounds);
const WINDOW = Number(values.window);
const BODY = Buffer.alloc(Number(values.size), 'x');
const AMQP = process.env.WARREN_BENCH_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const RUN = Date.now().toString(36);
const ROUTED = `/bench-mandatory-${RUN}/routed`;
const UNROUTED = `/bench-mandatory-${RUN}/unrouted`;
const QUEUE = `bench-mandatory-${RUN}`;

/** Keeps `WINDOW` publishes unconfirmed; resolves with messages per second. */
async function rate(send) {
  let sent = 0;
  let done = 0;
  const t0 = performance.now();
  await new Promise((resolve, reject) => {
    const next = () => {
      if (sent >= M) return;
      const i = sent++;
      send(i).then(() => (++done === M ? resolve() : next()), reject);
    };
    for (let k = 0; k < WINDOW; k++) next();
  });
  return M / ((performance.now() - t0) / 1000);
}

const conn = await amqp.connect(AMQP, { noDelay: true });
const ch = await conn.createConfirmChannel();
await ch.assertExchange(DEFAULT_EXCHANGE, EXCHANGE_TYPE, { durable: true });
await ch.assertQueue(QUEUE, { durable: true, arguments: { 'x-max-length': 1000, 'x-overflow': 'drop-head' } });
await ch.bindQueue(QUEUE, DEFAULT_EXCHANGE, ROUTED);
let returned = 0;
ch.on('return', () => returned++);
const producer = new Producer({ url: AMQP });
await producer.publish('warm').to(ROUTED);

const raw = (mandatory) => (channel) => (i) =>
  new Promise((resolve, reject) => {
    const props = toWireProperties({ id: `m-${i}`, contentType: 'text/plain', body: BODY });
    ch.publish(DEFAULT_EXCHANGE, channel, BODY, mandatory ? { ...props, mandatory } : props, (err) =>
      err == null ? resolve() : reject(err),
    );
  });
const variants = [
  ['amqplib, plain', raw(false)],
  ['amqplib, mandatory', raw(true)],
  ['producer SDK (mandatory, returns matched)', (channel) => () => producer.publish(BODY).to(channel)],
];
const results = new Map();
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const channel of [ROUTED, UNROUTED]) {
      for (const [name, make] of variants) {
        const r = await rate(make(channel));
        const key = `${name} | ${channel === ROUTED ? 'routed (1 queue)' : 'unrouted'}`;
        results.set(key, [...(results.get(key) ?? []), r]);
        process.stderr.write(`round ${round + 1}: ${key}: ${r.toFixed(0)}/s\n`);
      }
    }
  }
} finally {
  await producer.close();
  await ch.deleteQueue(QUEUE);
  await conn.close();
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(
  `${M} messages of ${BODY.length} B, ${WINDOW} unconfirmed, persistent; ${ROUNDS} rounds; returns seen on the raw channel: ${returned}`,
);
console.log('| publisher | target | msg/s per round | median |');
console.log('|---|---|---|---|');
for (const [key, rs] of results) {
  const [name, target] = key.split(' | ');
  console.log(`| ${name} | ${target} | ${rs.map((r) => r.toFixed(0)).join(', ')} | ${median(rs).toFixed(0)} |`);
}
