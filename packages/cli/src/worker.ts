// The entry of each worker of `warren serve --workers n` (forked by the
// primary, see workers.ts): one gateway on the port the workers share.
import { createGateway, type Gateway, type GatewayOptions } from '@warren/gateway';
import { describeStartFailure, startFailureStatus, type StopHow } from './lifecycle.js';
import type { PrimaryMessage, WorkerMessage } from './workers.js';

const send = (message: WorkerMessage, then?: () => void): void => {
  process.send!(message, undefined, undefined, () => then?.());
};

process.on('message', (message: PrimaryMessage) => {
  if (message?.type === 'warren:start') void start(message.input);
});
// The worker asks for its settings: a message sent before this module ran (it loads
// asynchronously, being ESM) would have found no listener and been lost.
send({ type: 'warren:waiting' });

async function start(input: Record<string, unknown>): Promise<void> {
  let gateway: Gateway | undefined;
  try {
    gateway = createGateway({ ...(input as GatewayOptions), clusterMetrics: true });
    const { port } = await gateway.listen();
    handleSignals(gateway);
    send({ type: 'warren:listening', port });
  } catch (err) {
    await gateway?.close().catch(() => undefined);
    const status = startFailureStatus(err);
    send({ type: 'warren:failed', message: describeStartFailure(err, input), status }, () => process.exit(status));
  }
}

/**
 * SIGTERM drains, SIGINT closes, as in one process; the first signal decides
 * (a worker may get one from its primary and one from its process group).
 */
function handleSignals(gateway: Gateway): void {
  let stopping: Promise<void> | undefined;
  const stop = (how: StopHow): void => {
    stopping ??= (how === 'drain' ? gateway.drain() : gateway.close()).finally(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('drain'));
  process.on('SIGINT', () => stop('close'));
  // Forwarded by the primary: each worker owns its TLS context and reads the files again.
  process.on('SIGHUP', () => {
    if (gateway.options.tlsCert !== undefined) gateway.reloadTls();
  });
}
