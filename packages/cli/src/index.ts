import { Command } from 'commander';
import { listenCommand } from './listen.js';
import { publishCommand } from './publish.js';
import { serveCommand } from './serve.js';

export function program(): Command {
  return new Command('warren')
    .description('Warren: push over Server-Sent Events, WebSocket and long-poll, on RabbitMQ')
    .version('0.1.0')
    .addCommand(serveCommand())
    .addCommand(publishCommand())
    .addCommand(listenCommand());
}

export async function main(argv: readonly string[]): Promise<void> {
  await program().parseAsync([...argv]);
}
