// npm run fuzz: every fuzz target for a while each, and a summary of executions, corpus and
// coverage per target. npm run fuzz:ci: the short run CI makes (regression inputs first, then a
// few seconds of fuzzing each), ending with `fuzz: N passed, M failed` (a target passes when it
// found nothing). See docs/fuzzing.md.
//
//   node dist/fuzz/run.js [--seconds 600] [--seed N] [--targets a,b] [--jobs 2] [--ci]
import { fork } from 'node:child_process';
import { cpSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { buildNative, nativeTargets, runNative, type TargetResult } from './native_targets.js';
import { targets } from './targets.js';
import type { WorkerJob, WorkerMessage } from './worker.js';

const USAGE = 'usage: node dist/fuzz/run.js [--seconds 600] [--seed N] [--targets a,b] [--jobs 2] [--timeout 20] [--ci]';

/** A bad command line: the reason and the usage on stderr, exit status 2 (no stack trace). */
function usageError(message: string): never {
  console.error(`fuzz: ${message}\n${USAGE}`);
  process.exit(2);
}

function readOptions() {
  try {
    return parseArgs({
      options: {
        seconds: { type: 'string' },
        seed: { type: 'string' },
        targets: { type: 'string' },
        jobs: { type: 'string', default: '1' },
        timeout: { type: 'string', default: '20' },
        ci: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    }).values;
  } catch (error) {
    return usageError(error instanceof Error ? error.message : String(error));
  }
}

const options = readOptions();
if (options.help) {
  console.log(USAGE);
  process.exit(0);
}

function positiveInteger(text: string | undefined, what: string, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (text.trim() === '' || !Number.isInteger(n) || n < 0) usageError(`--${what} is ${JSON.stringify(text)}: expected a non-negative integer`);
  return n;
}

const seconds = positiveInteger(options.seconds, 'seconds', options.ci ? 10 : 600);
const seed = positiveInteger(options.seed, 'seed', Math.floor(Math.random() * 2 ** 31));
const jobs = Math.max(1, positiveInteger(options.jobs, 'jobs', 1));
const inputTimeout = positiveInteger(options.timeout, 'timeout', 20);
const allNames = [...nativeTargets.map((t) => t.name), ...targets.map((t) => t.name)];
const chosen = options.targets ? options.targets.split(',') : allNames;
for (const name of chosen) if (!allNames.includes(name)) usageError(`--targets: no target '${name}': expected some of ${allNames.join(', ')}`);

// Regression inputs are committed; the growing corpus and new findings stay out of the repository.
const REGRESSIONS = 'fuzz/regressions';
const WORK = '.fuzz';
const dirsOf = (name: string) => ({
  regressions: join(REGRESSIONS, name),
  corpus: join(WORK, 'corpus', name),
  findings: join(WORK, 'findings'),
  work: join(WORK, 'work', name),
});

/** One TypeScript target in a worker process, watched for hangs and crashes. */
function runTypeScript(name: string, targetSeed: number): Promise<TargetResult> {
  const dirs = dirsOf(name);
  const target = targets.find((t) => t.name === name)!;
  const job: WorkerJob = { target: name, seconds, seed: targetSeed, corpusDir: dirs.corpus, regressionsDir: dirs.regressions, findingsDir: dirs.findings, workDir: dirs.work };
  const inputPath = join(dirs.work, target.fileName);
  return new Promise((resolvePromise) => {
    const child = fork(join(import.meta.dirname, 'worker.js'), [JSON.stringify(job)], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
    let done: Extract<WorkerMessage, { type: 'done' }> | null = null;
    const findings: string[] = [];
    let phase = 'start';
    let hung = false;
    let lastInput = Date.now();
    // Seeds are generated before the first input (models saved, images encoded): more room then.
    const watchdog = setInterval(() => {
      const limit = phase === 'start' ? 120_000 : inputTimeout * 1000;
      if (Date.now() - lastInput > limit) {
        hung = true;
        child.kill('SIGKILL');
      }
    }, 500);
    /** The input the target was reading when its process died or hung: a finding of its own. */
    const keepInput = (what: string) => {
      if (!existsSync(inputPath)) return;
      mkdirSync(dirs.findings, { recursive: true });
      const saved = join(dirs.findings, `${name}-${what}-${Date.now()}`);
      cpSync(inputPath, saved);
      findings.push(`${what}: ${saved}`);
    };
    child.on('message', (m: WorkerMessage) => {
      if (m.type === 'input') {
        phase = m.phase;
        lastInput = Date.now();
      } else if (m.type === 'finding') {
        findings.push(`${m.message} (input: ${m.path})`);
      } else if (m.type === 'done') {
        done = m;
      }
    });
    child.on('exit', (code, signal) => {
      clearInterval(watchdog);
      if (hung) keepInput(`hang-over-${inputTimeout}s`);
      else if (!done) keepInput(`crash-${signal ?? `exit-${code}`}`);
      const passed = done !== null && findings.length === 0;
      const stats = done
        ? `${done.executions} executions (${done.accepted} accepted, the rest refused), ${done.blocks.reached} of ${done.blocks.known} blocks of the library reached, corpus ${done.corpus}, ${done.regressions} regression inputs replayed`
        : `the worker ${hung ? `hung (no input for ${inputTimeout} s)` : `died (${signal ?? `exit ${code}`})`} in phase ${phase}${stderr ? `:\n${stderr.trim().split('\n').slice(-6).join('\n')}` : ''}`;
      resolvePromise({ name, passed, summary: stats + (findings.length ? `\n  ${findings.slice(0, 5).join('\n  ')}${findings.length > 5 ? `\n  ... ${findings.length} in all` : ''}` : '') });
    });
  });
}

async function main(): Promise<void> {
  console.log(`fuzz: ${chosen.length} targets, ${seconds} s each, seed ${seed} (--seed to replay), ${jobs} at a time`);
  const results: TargetResult[] = [];
  const report = (r: TargetResult) => {
    results.push(r);
    console.log(`fuzz ${r.name}: ${r.passed ? 'passed' : 'FAILED'}: ${r.summary}`);
  };
  const natives = nativeTargets.filter((t) => chosen.includes(t.name));
  if (natives.length > 0) {
    const problem = buildNative((line) => console.log(line));
    for (const t of natives) report(runNative(t, seconds, dirsOf(t.name), problem));
  }
  // The TypeScript targets, `jobs` at a time, each with a seed of its own derived from the run's.
  const queue = targets.filter((t) => chosen.includes(t.name)).map((t, i) => ({ name: t.name, seed: (seed + i * 7919) >>> 0 }));
  await Promise.all(
    Array.from({ length: jobs }, async () => {
      for (let next = queue.shift(); next; next = queue.shift()) report(await runTypeScript(next.name, next.seed));
    }),
  );
  const failed = results.filter((r) => !r.passed).length;
  console.log(`fuzz: ${results.length - failed} passed, ${failed} failed`);
  process.exitCode = failed === 0 ? 0 : 1;
}

await main();
