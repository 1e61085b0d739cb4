#!/usr/bin/env node
// The castling-vit command line. `info` prints what the engine runs on; later commands (train,
// predict) are added here as the library grows.
import { parseArgs } from 'node:util';

import { backendInfo } from './backend.js';

const usage = `usage: castling-vit <command>

commands:
  info      the CPU path, threads, version and CUDA availability (--json for JSON)
  help      this text`;

function main(argv: string[]): number {
  const { positionals, values } = parseArgs({ args: argv, allowPositionals: true, options: { json: { type: 'boolean' } } });
  const command = positionals[0] ?? 'help';
  switch (command) {
    case 'info': {
      const info = backendInfo();
      if (values.json) {
        console.log(JSON.stringify(info, null, 2));
      } else {
        console.log(`castling-vit ${info.version}`);
        console.log(`cpu:     ${info.cpu}`);
        console.log(`path:    ${info.isa} (supported: ${info.supportedIsas.join(', ')})`);
        console.log(`threads: ${info.threads}`);
        console.log(`cuda:    ${info.cuda.available ? 'available' : `not available: ${info.cuda.reason}`}`);
      }
      return 0;
    }
    case 'help':
      console.log(usage);
      return 0;
    default:
      console.error(`castling-vit: unknown command '${command}'\n\n${usage}`);
      return 2;
  }
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (error) {
  console.error(`castling-vit: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
}
