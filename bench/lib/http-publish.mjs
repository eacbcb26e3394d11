// The publish-rate group (issue 17 item 2): how many messages a second reach
// RabbitMQ, confirmed, through the gateway's HTTP endpoint (one message a
// request, pipelined; batches; several connections) and through the producer
// SDK, on one channel a consumer queue is bound to. Each client keeps a fixed
// number of requests unanswered (its window) until `m` messages are confirmed.
import { once } from 'node:events';
import { connect } from 'node:net';
import { Client, Pool } from 'undici';
import { Producer } from '@warren/producer';
import { now } from './tracker.mjs';

/** Runs `send(i)` for i = 0..m-1 with at most `window` unsettled; each `send` covers `per` messages. */
async function windowed(m, per, window, send) {
  const calls = Math.ceil(m / per);
  let next = 0;
  let done = 0;
  let failed = 0;
  let firstError;
  const startAt = now();
  await new Promise((resolve) => {
    const one = () => {
      if (next >= calls) return;
      const i = next++;
      send(i, Math.min(per, m - i * per)).then(
        (bad) => settle(bad),
        (err) => settle(Math.min(per, m - i * per), err),
      );
    };
    const settle = (bad, err) => {
      failed += bad;
      if (err !== undefined) firstError ??= String(err.message ?? err);
      if (++done === calls) resolve();
      else one();
    };
    for (let k = 0; k < window; k++) one();
  });
  const seconds = (now() - startAt) / 1000;
  return { m, seconds, perSec: (m - failed) / seconds, failed, error: firstError };
}

const body = (size, i) => `{"s":${i},"p":"${'x'.repeat(Math.max(0, size - 12 - String(i).length))}"}`;

/** One message a request, on `connections` keep-alive connections with `pipelining` requests in flight on each. */
export async function httpSingle({ url, token, channel, m, size, connections, pipelining }) {
  const dispatcher = connections === 1 ? new Client(url, { pipelining }) : new Pool(url, { connections, pipelining });
  const path = `/_warren/publish?channel=${encodeURIComponent(channel)}`;
  try {
    return await windowed(m, 1, connections * pipelining, async (i) => {
      const res = await dispatcher.request({
        path,
        method: 'POST',
        // undici pipelines a POST only when it may be sent again (`idempotent`: a message id makes a repeat
        // harmless) and does not hold the pipeline (`blocking`, true by default for all but HEAD).
        idempotent: true,
        blocking: false,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'message-id': `h-${i}` },
        body: body(size, i),
      });
      const text = await res.body.text();
      return res.statusCode === 200 ? 0 : Promise.reject(new Error(`${res.statusCode} ${text.slice(0, 200)}`));
    });
  } finally {
    await dispatcher.close();
  }
}

/** `batch` messages a request (`application/x-ndjson`), `pipelining` requests in flight on one connection each. */
export async function httpBatch({ url, token, channel, m, size, batch, connections, pipelining }) {
  const dispatcher = connections === 1 ? new Client(url, { pipelining }) : new Pool(url, { connections, pipelining });
  try {
    return await windowed(m, batch, connections * pipelining, async (i, n) => {
      let lines = '';
      for (let k = 0; k < n; k++) {
        const seq = i * batch + k;
        lines += `{"channel":${JSON.stringify(channel)},"id":"b-${seq}","data":${body(size, seq)}}\n`;
      }
      const res = await dispatcher.request({
        path: '/_warren/publish/batch',
        method: 'POST',
        idempotent: true,
        blocking: false,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
        body: lines,
      });
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`${res.statusCode} ${text.slice(0, 200)}`);
      const answer = JSON.parse(text);
      if (answer.results.length !== n) throw new Error(`${answer.results.length} results for ${n} messages`);
      return answer.failed;
    });
  } finally {
    await dispatcher.close();
  }
}

/** The producer SDK (AMQP straight to RabbitMQ, or HTTP through the gateway), `window` publishes in flight. */
export async function sdk({ url, token, channel, m, size, window }) {
  const producer = new Producer(token === undefined ? { url } : { url, token });
  try {
    await producer.publish('warm-up').to(channel);
    return await windowed(m, 1, window, async (i) => {
      await producer.publish(JSON.parse(body(size, i))).to(channel);
      return 0;
    });
  } finally {
    await producer.close();
  }
}

/**
 * One message a request, `window` requests pipelined on one connection, by a
 * client that writes the requests' bytes itself and reads the answers by
 * their Content-Length: a client much cheaper than undici, so that the
 * figure is the gateway's rather than the client's (they share the cores).
 */
export async function rawPipelined({ url, token, channel, m, size, window }) {
  const { hostname, port } = new URL(url);
  const socket = connect({ host: hostname, port: Number(port), noDelay: true });
  await once(socket, 'connect');
  const path = `/_warren/publish?channel=${encodeURIComponent(channel)}`;
  const request = (i) => {
    const text = body(size, i);
    return `POST ${path} HTTP/1.1\r\nHost: ${hostname}\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nMessage-Id: r-${i}\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`;
  };
  let sent = 0;
  let done = 0;
  let failed = 0;
  let error;
  let buffer = Buffer.alloc(0);
  const startAt = now();
  try {
    await new Promise((resolve, reject) => {
      const pump = () => {
        let out = '';
        while (sent < m && sent - done < window) out += request(sent++);
        if (out !== '') socket.write(out);
      };
      socket.on('data', (chunk) => {
        buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
        for (;;) {
          const end = buffer.indexOf('\r\n\r\n');
          if (end < 0) break;
          const head = buffer.subarray(0, end).toString('latin1');
          const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1]);
          if (!Number.isFinite(length)) return reject(new Error(`an answer without content-length: ${head.slice(0, 200)}`));
          if (buffer.length < end + 4 + length) break;
          if (!head.startsWith('HTTP/1.1 200')) {
            failed++;
            error ??= `${head.split('\r\n')[0]} ${buffer
              .subarray(end + 4, end + 4 + length)
              .toString('utf8')
              .slice(0, 200)}`;
          }
          buffer = buffer.subarray(end + 4 + length);
          done++;
        }
        if (done >= m) resolve();
        else pump();
      });
      socket.on('error', reject);
      socket.on('close', () => reject(new Error(`the connection closed after ${done} answers`)));
      pump();
    });
  } finally {
    socket.destroy();
  }
  const seconds = (now() - startAt) / 1000;
  return { m, seconds, perSec: (m - failed) / seconds, failed, error };
}
