// `npm run bench -- <name> [--json FILE] [options]`: the benchmark runner (runner.ts) as this
// repository uses it, keeping the attention chart and onnx results in bench/.
import { runBenchmarks } from './runner.js';

runBenchmarks(process.argv.slice(2), { command: 'npm run bench --', repository: true }).then(
  (code) => (process.exitCode = code),
  (error) => {
    console.error(`bench: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  },
);
