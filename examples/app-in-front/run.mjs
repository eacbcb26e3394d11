// The app in front, in one command:
//
//   node examples/app-in-front/run.mjs
//
// starts the chat app (app.mjs) on PORT (3000) and a `warren serve` process
// in front of it on GATEWAY_PORT (4000), both on 127.0.0.1 (0 picks a free
// port), with a publish token it generates for the two of them:
//
//   warren serve --upstream http://127.0.0.1:3000 --push-routes /live/ \
//                --auth-url http://127.0.0.1:3000/warren/auth
//
// then prints `open http://127.0.0.1:4000/`. Browsers only ever talk to the
// gateway. Ctrl-C (SIGINT) or SIGTERM stops both.
//
//   WARREN_AMQP_URL=amqp://guest:guest@localhost:5672   the gateway runs on RabbitMQ
//       (default: its embedded broker) and the app publishes straight to it
//   WARREN_LOG_LEVEL=info                               the gateway's log level (warn)
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { Producer } from '@warren/producer';
import { createApp } from './app.mjs';

const HOST = '127.0.0.1';
const WARREN = fileURLToPath(new URL('../../packages/cli/bin/warren.js', import.meta.url));
const amqpUrl = process.env.WARREN_AMQP_URL || undefined;
const token = randomBytes(24).toString('base64url');

// 1. The app, first: the gateway needs its address.
const app = createApp();
await new Promise((resolve, reject) => app.server.once('error', reject).listen(Number(process.env.PORT ?? 3000), HOST, resolve));
const appUrl = `http://${HOST}:${app.server.address().port}`;

// 2. The gateway in front of it, as its own process. The token goes in the
//    environment, not on the command line (where `ps` would show it).
const gateway = spawn(
  process.execPath,
  [
    WARREN,
    'serve',
    '--host',
    HOST,
    '--port',
    String(process.env.GATEWAY_PORT ?? 4000),
    '--upstream',
    appUrl,
    '--push-routes',
    '/live/',
    '--auth-url',
    `${appUrl}/warren/auth`,
    '--log-level',
    process.env.WARREN_LOG_LEVEL || 'warn',
  ],
  { env: { ...process.env, WARREN_PUBLISH_TOKEN: token }, stdio: ['ignore', 'pipe', 'inherit'] },
);
let stopping = false;
/** Set once the gateway is up (step 3); stop() may run before. */
let producer; // eslint-disable-line prefer-const -- assigned after stop() is defined

async function stop(code) {
  if (stopping) return;
  stopping = true;
  app.server.close();
  app.server.closeAllConnections();
  if (gateway.exitCode === null && gateway.signalCode === null) {
    // SIGINT closes at once (SIGTERM would drain, for seconds).
    gateway.kill('SIGINT');
    const timer = setTimeout(() => gateway.kill('SIGKILL'), 5000);
    await once(gateway, 'exit').catch(() => undefined);
    clearTimeout(timer);
  }
  await producer?.close().catch(() => undefined);
  process.exit(code);
}
process.once('SIGINT', () => void stop(0));
process.once('SIGTERM', () => void stop(0));
// Whatever happens to this process, the gateway does not outlive it.
process.once('exit', () => gateway.exitCode === null && gateway.signalCode === null && gateway.kill('SIGKILL'));

gateway.once('exit', (code, signal) => {
  if (stopping) return;
  console.error(`run: the gateway stopped (${signal ?? `exit code ${code}`})`);
  void stop(code === 0 ? 0 : 1);
});

// `warren serve` prints "Warren gateway on http://localhost:<port> (...)" once it listens.
let banner = '';
const port = await new Promise((resolve) => {
  const onData = (chunk) => {
    banner += chunk.toString();
    const m = /Warren gateway on http:\/\/[^:\s]+:(\d+)/.exec(banner);
    if (m === null) return;
    gateway.stdout.off('data', onData);
    gateway.stdout.resume(); // the rest of its output is not needed
    resolve(Number(m[1]));
  };
  gateway.stdout.on('data', onData);
});
const gatewayUrl = `http://${HOST}:${port}`;

// 3. The app's producer: straight to RabbitMQ when there is one, else through
//    the gateway's publish endpoint (the way into the embedded broker).
producer = new Producer({ url: amqpUrl ?? gatewayUrl, token, timeoutMs: 5000 });
app.useProducer(producer);

console.log(`app: ${appUrl} (behind the gateway)`);
console.log(`gateway: ${gatewayUrl} (${amqpUrl === undefined ? 'embedded broker' : 'RabbitMQ'})`);
console.log(`open ${gatewayUrl}/`);
