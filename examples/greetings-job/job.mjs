// A producer job: publishes a greeting to /greetings every second.
//
//   node examples/greetings-job/job.mjs          (beside npm start: http://localhost:4000)
//   WARREN_URL=http://gateway:4000 WARREN_PUBLISH_TOKEN=... node examples/greetings-job/job.mjs
//   WARREN_AMQP_URL=amqp://guest:guest@localhost:5672 node examples/greetings-job/job.mjs
//
// For a gateway the producer takes WARREN_PUBLISH_TOKEN, else the token file
// `warren serve` wrote on this machine. COUNT stops it after that many
// messages; INTERVAL_MS sets the period.
import { Producer, WarrenError } from '@warren/producer';

/** One line on stderr and exit 1 for what the person running the job can fix; a stack trace for the rest. */
function stop(err) {
  if (!(err instanceof WarrenError)) throw err;
  const text = err.code === 'PRODUCER_NOT_CONFIGURED' ? err.message : `${err.code}: ${err.message}`;
  process.stderr.write(`greetings-job: ${text}\n`);
  process.exit(1);
}

let producer;
try {
  producer = new Producer({ url: process.env.WARREN_AMQP_URL || process.env.WARREN_URL || 'http://localhost:4000' });
} catch (err) {
  stop(err);
}
const count = Number(process.env.COUNT ?? Infinity);
const interval = Number(process.env.INTERVAL_MS ?? 1000);

let stopping = false;
process.once('SIGINT', () => (stopping = true));
process.once('SIGTERM', () => (stopping = true));

try {
  for (let n = 1; n <= count && !stopping; n++) {
    const { id } = await producer
      .publish({ greeting: 'hi there!', n, at: new Date().toISOString() }, { event: 'greeting' })
      .to('/greetings');
    console.log(`published greeting ${n} (${id})`);
    if (n < count) await new Promise((resolve) => setTimeout(resolve, interval));
  }
} catch (err) {
  await producer.close();
  stop(err);
}
await producer.close();
