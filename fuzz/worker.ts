// One TypeScript target's fuzzing loop, in a process of its own (run.ts starts it and watches it):
// the target's regression inputs first, then its seeds and stored corpus, then mutated inputs for
// the given time. Before each input it tells run.ts, which treats silence as a hang and a dead
// process as a crash, and keeps the input file the target was reading.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import { BlockCoverage } from './coverage.js';
import { readCorpus, store } from './corpus.js';
import { mutateBytes } from './mutate_bytes.js';
import { mutateJsonText } from './mutate_json.js';
import { mutateSafetensors } from './mutate_safetensors.js';
import { Finding } from './property.js';
import { FuzzRandom } from './random.js';
import { targetNamed, type FuzzTarget } from './targets.js';

/** What run.ts hands over (as JSON in argv) and what the worker reports back. */
export interface WorkerJob {
  target: string;
  seconds: number;
  seed: number;
  corpusDir: string;
  regressionsDir: string;
  findingsDir: string;
  workDir: string;
}
export type WorkerMessage =
  | { type: 'input'; phase: 'regression' | 'seed' | 'fuzz'; executions: number }
  | { type: 'finding'; path: string; message: string }
  | { type: 'ping' }
  | { type: 'done'; executions: number; accepted: number; corpus: number; blocks: { reached: number; known: number }; findings: number; regressions: number };

function send(message: WorkerMessage): void {
  process.send!(message);
}

function mutate(target: FuzzTarget, input: Uint8Array, random: FuzzRandom, other: Uint8Array): Uint8Array {
  if (target.kind === 'safetensors' && random.chance(0.4)) {
    const out = mutateSafetensors(input, random);
    if (out) return out;
  }
  if (target.kind === 'json' && random.chance(0.6)) {
    const text = mutateJsonText(new TextDecoder().decode(input), random);
    if (text !== null) return new TextEncoder().encode(text);
  }
  return mutateBytes(input, random, other);
}

async function main(job: WorkerJob): Promise<void> {
  const target = targetNamed(job.target);
  mkdirSync(job.workDir, { recursive: true });
  target.prepare?.(job.workDir);
  const path = join(job.workDir, target.fileName);
  const libraryRoot = pathToFileURL(resolve('dist/lib')).href;
  const coverage = new BlockCoverage((url) => url.startsWith(libraryRoot));
  const random = new FuzzRandom(job.seed);
  const corpus: Uint8Array[] = [];
  let executions = 0;
  let findings = 0;
  let accepted = 0;

  /** Runs one input; true when it reached new blocks. */
  async function execute(input: Uint8Array, phase: 'regression' | 'seed' | 'fuzz'): Promise<boolean> {
    writeFileSync(path, input);
    send({ type: 'input', phase, executions });
    executions++;
    try {
      if (await target.run(input, path)) accepted++;
    } catch (error) {
      const message = error instanceof Finding ? error.message : `the harness itself failed: ${error instanceof Error ? error.stack : String(error)}`;
      findings++;
      const saved = store(job.findingsDir, input, `${target.name}-`, message);
      send({ type: 'finding', path: saved, message });
    }
    return coverage.collect();
  }

  const regressions = readCorpus(job.regressionsDir);
  for (const { input } of regressions) await execute(input, 'regression');
  for (const input of [...(await target.seeds()), ...readCorpus(job.corpusDir).map((e) => e.input)]) {
    if (await execute(input, 'seed')) corpus.push(input);
  }
  if (corpus.length === 0) throw new Error(`${target.name}: no seed input reached any code`);
  const end = Date.now() + job.seconds * 1000;
  while (Date.now() < end) {
    const input = mutate(target, random.pick(corpus), random, random.pick(corpus));
    if (await execute(input, 'fuzz')) {
      corpus.push(input);
      store(job.corpusDir, input);
    }
  }
  send({ type: 'done', executions, accepted, corpus: corpus.length, blocks: coverage.counts, findings, regressions: regressions.length });
  coverage.close();
}

main(JSON.parse(process.argv[2]!) as WorkerJob).then(
  // The report is sent before leaving: the native thread pool would otherwise keep the process up.
  () => process.send!({ type: 'ping' }, () => process.exit(0)),
  (error: unknown) => {
    console.error(error);
    process.exit(2);
  },
);
