/**
 * The faults of a run. Each `run()` applies its fault and returns when the
 * fault is over (the broker reachable again, the gateway restarted); the
 * runner surrounds it with steady traffic and measures recovery from there.
 */
import type { FaultProxy } from '../support/fault-proxy.js';
import type { RabbitNode } from '../support/rabbit-node.js';
import type { Consumer } from './consumers.js';
import { RawSseConsumer, WsConsumer } from './consumers.js';
import type { GatewayProcess } from './gateway.js';
import type { Phase } from './history.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface FaultContext {
  node: RabbitNode;
  proxy: FaultProxy;
  gateway: GatewayProcess;
  phase: Phase;
  consumers: Consumer[];
  /** Nominal length of a lasting fault. */
  faultMs: number;
  /** Longest a black-hole or pause lasts while waiting for the gateway to notice. */
  detectBoundMs: number;
  log: (line: string) => void;
}

export interface Fault {
  name: string;
  what: string;
  run(ctx: FaultContext): Promise<void>;
}

/**
 * Watches `/_warren/health` from now on; `stop()` gives the ms until it first
 * answered 503, or null when it never did.
 */
function watchHealth(gateway: GatewayProcess): { down: () => boolean; stop: () => number | null } {
  const t0 = Date.now();
  let downAt: number | undefined;
  let on = true;
  void (async () => {
    while (on && downAt === undefined) {
      if ((await gateway.health()) === 503) downAt = Date.now();
      else await sleep(200);
    }
  })();
  return {
    down: () => downAt !== undefined,
    stop: () => {
      on = false;
      return downAt === undefined ? null : downAt - t0;
    },
  };
}

/**
 * Keeps a silent-broker fault on for `faultMs`, longer if the gateway has not
 * noticed yet (health still 200), at most `detectBoundMs`; records detection.
 */
async function holdUntilDetected(ctx: FaultContext): Promise<void> {
  const watch = watchHealth(ctx.gateway);
  const t0 = Date.now();
  while (Date.now() - t0 < ctx.faultMs || (!watch.down() && Date.now() - t0 < ctx.detectBoundMs)) await sleep(100);
  await sleep(watch.down() ? 0 : 300);
  ctx.phase.healthDownAfterMs = watch.stop();
}

export const FAULTS: Fault[] = [
  {
    name: 'proxy-cut',
    what: 'every gateway↔broker TCP connection destroyed at once',
    async run({ proxy }) {
      proxy.cut();
    },
  },
  {
    name: 'proxy-blackhole',
    what: 'gateway↔broker bytes held both ways, sockets open (a partition)',
    async run(ctx) {
      ctx.proxy.blackhole(true);
      try {
        await holdUntilDetected(ctx);
      } finally {
        ctx.proxy.blackhole(false);
      }
    },
  },
  {
    name: 'proxy-delay',
    what: '200 ms added to every chunk gateway↔broker',
    async run({ proxy, faultMs }) {
      proxy.delay(200);
      await sleep(faultMs);
      proxy.delay(0);
    },
  },
  {
    name: 'cut-after-connect',
    what: 'cut, then each reconnect cut again 4–120 ms after it is accepted (delays 4 ms apart, swept up to 3 times, at most 3 × the fault length, until the gateway exits; anonymous stream open)',
    async run({ proxy, phase, faultMs, gateway }) {
      // The gateway is vulnerable only while it sets itself up again after a
      // reconnect, a window of a few ms somewhere in the first ~100: sweep it,
      // in an order that spreads the first tries over the whole range (the
      // gateway's backoff grows to 5 s while its reconnects fail).
      const delays = Array.from({ length: 90 }, (_, k) => 4 + 4 * ((k * 7) % 30));
      const starts = gateway.starts;
      const endBy = Date.now() + 3 * faultMs;
      let tries = 0;
      try {
        for (const ms of delays) {
          if (Date.now() > endBy || gateway.starts > starts) break; // bounded; a crash is on record
          tries += 1;
          proxy.cutAfterConnect(ms);
          const accepted = proxy.accepted;
          proxy.cut();
          const t0 = Date.now();
          // Wait for the gateway's reconnect (its backoff grows to 5 s) and that cut.
          while (proxy.accepted === accepted && Date.now() - t0 < 12_000 && Date.now() < endBy) await sleep(20);
          await sleep(ms + 50);
          if (proxy.accepted === accepted && Date.now() < endBy) phase.notes.push(`no reconnect within 12 s after the cut at ${ms} ms`);
        }
      } finally {
        proxy.cutAfterConnect(undefined);
        phase.notes.push(`${tries} reconnects cut`);
      }
    },
  },
  {
    name: 'close-all-conns',
    what: 'rabbitmqctl close_all_connections (gateway and producer)',
    async run({ node }) {
      await node.closeAllConnections();
    },
  },
  {
    name: 'stop-start-app',
    what: 'rabbitmqctl stop_app, 5 s, start_app',
    async run({ node }) {
      await node.stopApp();
      await sleep(5000);
      await node.startApp();
    },
  },
  {
    name: 'broker-sigstop',
    what: 'SIGSTOP of the broker (gateway and producer see a silent peer), then SIGCONT',
    async run(ctx) {
      ctx.node.pause();
      try {
        await holdUntilDetected(ctx);
      } finally {
        ctx.node.resume();
      }
    },
  },
  {
    name: 'broker-kill9',
    what: 'kill -9 of the broker, then a restart on the same data',
    async run({ node }) {
      await node.kill9();
      await node.restart();
    },
  },
  {
    name: 'gateway-kill9',
    what: 'kill -9 of the gateway, then a new process on the same port',
    async run({ gateway }) {
      await gateway.kill9AndRestart();
    },
  },
  {
    name: 'ws-slow-drop',
    what: 'the warren.v1 client stops reading for 8 s, then its connection breaks with unread bytes; it resumes from its lastEventId',
    async run({ consumers }) {
      await Promise.all(consumers.map((c) => (c instanceof WsConsumer ? c.readSlowlyThenDrop(8000) : Promise.resolve())));
    },
  },
  {
    name: 'sse-half-open',
    what: 'the identified SSE client reconnects while its old connection stays open, unread, for 35 s',
    async run({ consumers }) {
      for (const c of consumers) if (c instanceof RawSseConsumer && c.identified) c.reconnectLeavingOldOpen(35_000);
    },
  },
];

export const QUICK_FAULTS = ['proxy-cut', 'cut-after-connect', 'proxy-blackhole'];
