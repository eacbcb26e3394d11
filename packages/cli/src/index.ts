import { Command } from 'commander';
import { listenCommand } from './listen.js';
import { publishCommand } from './publish.js';
import { serveCommand } from './serve.js';

export function program(): Command {
  return new Command('warren')
    .description('Warren: a push gateway backed by RabbitMQ (long-poll today)')
    .version('0.1.0')
    .addCommand(serveCommand())
    .addCommand(publishCommand())
    .addCommand(listenCommand());
}

export async function main(argv: readonly string[]): Promise<void> {
  await program().parseAsync([...argv]);
}
