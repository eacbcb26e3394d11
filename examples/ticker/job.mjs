// A producer job: random-walk prices for a few stock symbols, one round every
// INTERVAL_MS (1000), each price published to /stocks and /stocks/<SYMBOL> as
// JSON {symbol, price, change, at} with the event name "price".
//
//   WARREN_URL=http://127.0.0.1:4000 WARREN_PUBLISH_TOKEN=... node examples/ticker/job.mjs
//   WARREN_AMQP_URL=amqp://guest:guest@localhost:5672 node examples/ticker/job.mjs
//
// SYMBOLS=ACME,GLOBEX picks the symbols; COUNT stops it after that many rounds.
// examples/ticker/server.mjs runs it beside a gateway and a page.
import { Producer } from '@warren/producer';

const url = process.env.WARREN_AMQP_URL || process.env.WARREN_URL || 'http://localhost:4000';
const producer = new Producer({ url, token: process.env.WARREN_PUBLISH_TOKEN, timeoutMs: 2000 });
const symbols = (process.env.SYMBOLS || 'ACME,GLOBEX,INITECH,UMBRELLA').split(',');
const interval = Number(process.env.INTERVAL_MS || 1000);
const count = Number(process.env.COUNT || Infinity);

// Each symbol starts somewhere between 20 and 220 and moves up to ±1% a round.
const prices = new Map(symbols.map((symbol) => [symbol, 20 + Math.random() * 200]));
const cents = (n) => Math.round(n * 100) / 100;

let stopping = false;
process.once('SIGINT', () => (stopping = true));
process.once('SIGTERM', () => (stopping = true));

console.log(`ticker: publishing ${symbols.join(', ')} to /stocks every ${interval} ms`);
let failing = false;
for (let round = 1; round <= count && !stopping; round++) {
  const at = new Date().toISOString();
  const quotes = symbols.map((symbol) => {
    const before = prices.get(symbol);
    const price = Math.max(0.01, before * (1 + (Math.random() - 0.5) * 0.02));
    prices.set(symbol, price);
    return { symbol, price: cents(price), change: cents(price - before), at };
  });
  try {
    await Promise.all(quotes.map((q) => producer.publish(q, { event: 'price' }).to(['/stocks', `/stocks/${q.symbol}`])));
    if (failing) console.log('ticker: publishing again');
    failing = false;
  } catch (err) {
    // The gateway or RabbitMQ may be restarting: keep going, say so once.
    if (!failing) console.error(`ticker: could not publish (${err.code ?? err.message}); still trying`);
    failing = true;
  }
  if (round < count && !stopping) await new Promise((resolve) => setTimeout(resolve, interval));
}
await producer.close();
