// A producer job: publishes a greeting to /greetings every second.
//
//   WARREN_AMQP_URL=amqp://guest:guest@localhost:5672 node examples/greetings-job/job.mjs
//   WARREN_URL=http://localhost:4000 WARREN_PUBLISH_TOKEN=... node examples/greetings-job/job.mjs
//
// COUNT stops it after that many messages; INTERVAL_MS sets the period.
import { Producer } from '@warren/producer';

const url = process.env.WARREN_AMQP_URL ?? process.env.WARREN_URL ?? 'http://localhost:4000';
const producer = new Producer({ url, token: process.env.WARREN_PUBLISH_TOKEN });
const count = Number(process.env.COUNT ?? Infinity);
const interval = Number(process.env.INTERVAL_MS ?? 1000);

let stopping = false;
process.once('SIGINT', () => (stopping = true));
process.once('SIGTERM', () => (stopping = true));

for (let n = 1; n <= count && !stopping; n++) {
  const { id } = await producer
    .publish({ greeting: 'hi there!', n, at: new Date().toISOString() }, { event: 'greeting' })
    .to('/greetings');
  console.log(`published greeting ${n} (${id})`);
  if (n < count) await new Promise((resolve) => setTimeout(resolve, interval));
}
await producer.close();
