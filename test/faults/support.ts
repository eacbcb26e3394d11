import { createGateway, silentLogger, type Gateway, type GatewayOptions } from '@warren/gateway';
import { AMQP_URL, requireRabbit, TOKEN } from '../support/index.js';
import { FaultProxy } from '../support/fault-proxy.js';

/** A gateway whose RabbitMQ connection runs through a {@link FaultProxy}. */
export interface ProxiedGateway {
  gateway: Gateway;
  proxy: FaultProxy;
  url: string;
  /** The broker URL through the proxy. */
  proxiedAmqpUrl: string;
  close(): Promise<void>;
}

export async function startProxiedGateway(options: GatewayOptions = {}): Promise<ProxiedGateway> {
  await requireRabbit();
  const target = new URL(AMQP_URL);
  const proxy = new FaultProxy({ targetHost: target.hostname, targetPort: Number(target.port || 5672) });
  const port = await proxy.listen();
  const proxied = new URL(AMQP_URL);
  proxied.port = String(port);
  const gateway = createGateway({
    port: 0,
    host: '127.0.0.1',
    publishToken: TOKEN,
    logger: silentLogger,
    amqpUrl: proxied.toString(),
    reconnectMinMs: 20,
    reconnectMaxMs: 200,
    ...options,
  });
  const address = await gateway.listen();
  return {
    gateway,
    proxy,
    url: `http://127.0.0.1:${address.port}`,
    proxiedAmqpUrl: proxied.toString(),
    async close() {
      proxy.blackhole(false);
      proxy.refuse(false);
      proxy.cutAfterConnect(undefined);
      await gateway.close();
      await proxy.close();
    },
  };
}
