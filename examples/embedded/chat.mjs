// The chat room of the Rack push proposal, on Warren's pub/sub: a WebSocket
// on /chat/<nickname> subscribes to /chat, announces "<nickname> joined the
// chat.", publishes each message as "<nickname>: <message>", and "<nickname>
// left the chat." when it closes. An EventSource on the same path only
// listens. Everything goes through the broker, so with RabbitMQ several
// processes of this app make one room.
//
//   node examples/embedded/chat.mjs        then open http://127.0.0.1:4403/?name=alice
//
//   PORT=0                                         pick a free port (default 4403)
//   WARREN_AMQP_URL=amqp://guest:guest@localhost:5672   run on RabbitMQ (start two on different ports: one room)
import { createServer } from 'node:http';
import { pathToFileURL } from 'node:url';
import { createGateway } from '@warren/gateway';

const ROOM = '/chat';
const NICKNAME = /^[A-Za-z0-9_-]{1,32}$/;
const MAX_MESSAGE = 1000;

/** One member of the room. */
export class Chat {
  constructor(nickname) {
    this.nickname = nickname;
  }

  async onOpen(conn) {
    await conn.subscribe(ROOM);
    if (conn.kind === 'websocket') await conn.publish(ROOM, `${this.nickname} joined the chat.`);
  }

  async onMessage(conn, data) {
    if (typeof data !== 'string' || data.length > MAX_MESSAGE) {
      conn.write(`(messages are text of at most ${MAX_MESSAGE} characters)`);
      return;
    }
    await conn.publish(ROOM, `${this.nickname}: ${data}`);
  }

  async onClose(conn) {
    if (conn.kind === 'websocket') await conn.publish(ROOM, `${this.nickname} left the chat.`);
  }
}

const PAGE = `<!doctype html>
<meta charset="utf-8"><title>Chat</title>
<h1>Chat</h1>
<form><input name="text" autocomplete="off" autofocus> <button>Send</button></form>
<ul id="log"></ul>
<script>
  const name = new URLSearchParams(location.search).get('name') || 'someone';
  const ws = new WebSocket(location.origin.replace('http', 'ws') + '/chat/' + encodeURIComponent(name));
  ws.onmessage = (e) => document.getElementById('log').append(Object.assign(document.createElement('li'), { textContent: e.data }));
  document.querySelector('form').onsubmit = (e) => {
    e.preventDefault();
    ws.send(e.target.text.value);
    e.target.text.value = '';
  };
</script>
`;

/** Starts the app; resolves with its URL and a `close()`. */
export async function start({ port = 4403, host = '127.0.0.1', amqpUrl, logLevel = 'warn' } = {}) {
  const server = createServer((req, res) => {
    if (req.method === 'GET' && (req.url === '/' || req.url?.startsWith('/?')))
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
    else res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  });
  const gateway = createGateway({
    server,
    logLevel,
    ...(amqpUrl === undefined ? {} : { amqpUrl }),
    onUpgrade({ path }) {
      const nickname = path.startsWith(`${ROOM}/`) ? decodeURIComponent(path.slice(ROOM.length + 1)) : '';
      return NICKNAME.test(nickname) ? new Chat(nickname) : undefined;
    },
  });
  await new Promise((resolve) => server.listen(port, host, resolve));
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
  const app = await start({ port: Number(process.env.PORT ?? 4403), amqpUrl: process.env.WARREN_AMQP_URL });
  console.log(`chat on ${app.url}/?name=alice (sockets: ${app.url.replace('http', 'ws')}/chat/<nickname>)`);
  process.once('SIGINT', () => app.close().then(() => process.exit(0)));
  process.once('SIGTERM', () => app.close().then(() => process.exit(0)));
}
