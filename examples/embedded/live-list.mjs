// The live list: an Express app whose page shows a list that updates in every
// open browser as soon as anyone adds an item. Express serves the page and
// `POST /items`; Warren, attached to the same server, takes the streams on
// /items (SSE or WebSocket). Adding an item is one gateway.publish().
//
//   node examples/embedded/live-list.mjs        then open http://127.0.0.1:4404/ twice
//
//   PORT=0                                         pick a free port (default 4404)
//   WARREN_AMQP_URL=amqp://guest:guest@localhost:5672   run on RabbitMQ
import { randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import express from 'express';
import { createGateway } from '@warren/gateway';

const CHANNEL = '/items';
const MAX_ITEMS = 1000;

const PAGE = `<!doctype html>
<meta charset="utf-8"><title>Live list</title>
<h1>Live list</h1>
<p id="status">connecting…</p>
<form><input name="text" autocomplete="off" autofocus maxlength="200"> <button>Add</button></form>
<ol id="list"></ol>
<script>
  const seen = new Set();
  const add = (item) => {
    if (seen.has(item.id)) return;
    seen.add(item.id);
    document.getElementById('list').append(Object.assign(document.createElement('li'), { textContent: item.text }));
  };
  const events = new EventSource('/items');
  events.addEventListener('snapshot', (e) => {
    JSON.parse(e.data).items.forEach(add);
    document.getElementById('status').textContent = 'live';
  });
  events.onerror = () => (document.getElementById('status').textContent = 'reconnecting…');
  events.addEventListener('item', (e) => add(JSON.parse(e.data)));
  document.querySelector('form').onsubmit = async (e) => {
    e.preventDefault();
    await fetch('/items', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: e.target.text.value }) });
    e.target.text.value = '';
  };
</script>
`;

/** Starts the app; resolves with its URL and a `close()`. */
export async function start({ port = 4404, host = '127.0.0.1', amqpUrl, logLevel = 'warn' } = {}) {
  const items = [];
  const app = express();
  app.get('/', (_req, res) => res.type('html').send(PAGE));
  app.get('/items', (_req, res) => res.json({ items }));
  app.post('/items', express.json({ limit: '4kb' }), async (req, res) => {
    const text = typeof req.body?.text === 'string' ? req.body.text.trim() : '';
    if (text.length === 0 || text.length > 200) return res.status(400).json({ error: 'text is 1 to 200 characters' });
    if (items.length >= MAX_ITEMS) return res.status(409).json({ error: 'the list is full' });
    const item = { id: randomUUID(), text };
    items.push(item);
    await gateway.publish(CHANNEL, item, { event: 'item' });
    res.status(201).json(item);
  });

  const server = app.listen(port, host);
  // A list reader subscribes first, then gets the list so far: nothing added in between is missed.
  const gateway = createGateway({
    server,
    logLevel,
    ...(amqpUrl === undefined ? {} : { amqpUrl }),
    onUpgrade: ({ path }) =>
      path === CHANNEL
        ? {
            async onOpen(conn) {
              await conn.subscribe(CHANNEL);
              conn.write(JSON.stringify({ items }), { event: 'snapshot' });
            },
          }
        : undefined,
  });
  await new Promise((resolve, reject) => (server.listening ? resolve() : server.once('listening', resolve).once('error', reject)));
  const url = `http://${host}:${server.address().port}`;
  return {
    url,
    gateway,
    async close() {
      await gateway.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const app = await start({ port: Number(process.env.PORT ?? 4404), amqpUrl: process.env.WARREN_AMQP_URL });
  console.log(`live list on ${app.url}/`);
  process.once('SIGINT', () => app.close().then(() => process.exit(0)));
  process.once('SIGTERM', () => app.close().then(() => process.exit(0)));
}
