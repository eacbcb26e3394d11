// The Node ceiling: the least a Node HTTP server can do to fan a message out
// to S open connections. SSE responses and raw WebSockets (`ws`, as the
// gateway uses) on any path. Messages come in on one TCP connection (the
// feed: lines of `<id>\t<body>\n`, in order, as Warren's come in on one AMQP
// connection); each is written to every connection, in the same SSE framing as
// Warren (`id:` + `data:`), then acknowledged with one `\n` on the feed (the
// publisher keeps a window of unacknowledged messages, as with confirms).
// No broker, no queue, no per-message acknowledgement from the subscribers, no
// per-connection timer: what is left is Node's own cost.
//
//   node bench/lib/node-ceiling.mjs      → prints "listening <http port> <feed port>"
import { createServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { WebSocketServer } from 'ws';

const sse = new Set();
const sockets = new Set();
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, clientTracking: false });

function fanOut(id, body) {
  const event = `id: ${id}\ndata: ${body}\n\n`;
  for (const r of sse) r.write(event);
  if (sockets.size > 0) {
    const bytes = Buffer.from(body);
    for (const ws of sockets) ws.send(bytes, { binary: false });
  }
}

const feed = createTcpServer((socket) => {
  socket.setNoDelay(true);
  socket.setEncoding('utf8');
  let buf = '';
  socket.on('data', (chunk) => {
    buf += chunk;
    let start = 0;
    let acks = '';
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n', start)) {
      const tab = buf.indexOf('\t', start);
      fanOut(buf.slice(start, tab), buf.slice(tab + 1, nl));
      acks += '\n';
      start = nl + 1;
    }
    buf = buf.slice(start);
    if (acks !== '') socket.write(acks);
  });
  socket.on('error', () => undefined);
});

const server = createServer((req, res) => {
  if (req.url === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ sse: sse.size, websocket: sockets.size }));
    return;
  }
  if (!/text\/event-stream/.test(req.headers.accept ?? '')) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
  });
  res.write('retry: 2000\n\n');
  sse.add(res);
  res.once('close', () => sse.delete(res));
});
server.on('upgrade', (req, socket, head) => {
  socket.on('error', () => undefined);
  wss.handleUpgrade(req, socket, head, (ws) => {
    sockets.add(ws);
    ws.on('error', () => undefined);
    ws.once('close', () => sockets.delete(ws));
  });
});
// As many pending connections as the gateway's server gets (Node's default).
server.listen(0, '127.0.0.1', () => {
  feed.listen(0, '127.0.0.1', () => process.stdout.write(`listening ${server.address().port} ${feed.address().port}\n`));
});
const stop = () => {
  for (const r of sse) r.destroy();
  for (const ws of sockets) ws.terminate();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
