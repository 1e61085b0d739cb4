// Times attention cases (H = 6, d = 64, batch 1) on two builds of the addon, e.g. a copy of the
// previous build against the current one, to see what a kernel change did. Each build runs in its
// own child process (CASTLING_ADDON_PATH), the two alternating run after run, since a shared
// machine's speed drifts by tens of percent within minutes; every child times its cases in
// interleaved rounds, so that each case's ratio to softmax is taken side by side. Prints medians,
// new / old, and the median ratio to softmax (when softmax is among the cases) per build.
//
//   node scripts/compare-addons.mjs OLD.node NEW.node [--tokens 3137] [--cases softmax,sparsifiner]
//                                   [--runs 6] [--rounds 5]
//
// Cases: softmax, castling (linear-angular forward), sparsifiner (predictor then sparse attention),
// predictor, sparse (the sparse attention alone, on the predictor's indices); the Sparsifiner ones
// take --keep-rate (0.25) and --coefficient-keep (4). Needs the TypeScript build (npm run build:ts).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readCommandLine } from './command-line.mjs';

const { values, positionals, usageError, positiveIntegers } = readCommandLine(
  'compare-addons',
  'usage: node scripts/compare-addons.mjs OLD.node NEW.node [--tokens 3137] [--cases softmax,sparsifiner,predictor,sparse] [--runs 6] [--rounds 5] [--keep-rate 0.25] [--coefficient-keep 4]',
  {
    allowPositionals: true,
    options: {
      tokens: { type: 'string', default: '3137' },
      cases: { type: 'string', default: 'softmax,sparsifiner,predictor,sparse' },
      runs: { type: 'string', default: '6' },
      rounds: { type: 'string', default: '5' },
      'keep-rate': { type: 'string', default: '0.25' },
      'coefficient-keep': { type: 'string', default: '4' },
      child: { type: 'boolean', default: false },
    },
  },
);
positiveIntegers('tokens', 'runs', 'rounds', 'coefficient-keep');
if (!(Number(values['keep-rate']) > 0 && Number(values['keep-rate']) <= 1)) usageError(`--keep-rate is '${values['keep-rate']}', expected a number in (0, 1]`);

function fail(message) {
  console.error(`compare-addons: ${message}`);
  process.exit(1);
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** The child: times the cases in interleaved rounds and prints {case: [ms, ...]} as JSON. */
async function child() {
  const { Tensor } = await import('../dist/lib/index.js');
  const { attention } = await import('../dist/lib/entry/ops.js');
  const { runAsync } = await import('../dist/lib/ops.js');
  const [N, H, d, K] = [Number(values.tokens), 6, 64, 9];
  const keepRate = Number(values['keep-rate']), coefficientKeep = Number(values['coefficient-keep']);
  // The attention benchmark's inputs: uniform in [-1, 1) from a linear congruential generator.
  const random = (shape, seed) => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    let s = seed;
    for (let i = 0; i < data.length; i++) {
      s = (s * 1103515245 + 12345) >>> 0;
      data[i] = (s / 2 ** 32) * 2 - 1;
    }
    return Tensor.fromArray(data, shape);
  };
  const [q, k, v] = [1, 2, 3].map((seed) => random([1, H, N, d], seed * N));
  const w = random([H, K], 5);
  const r = Math.max(1, Math.floor(N / 8));
  const weights = [random([d / 2, d], 11), random([d / 2], 12), random([d / 2, d], 13), random([d / 2], 14), random([N, r], 15), random([N, r], 16)];
  const predictorInputs = ['q', 'k', 'Wq', 'bq', 'Wk', 'bk', 'P', 'Bb'];
  const predict = () => runAsync('sparsifinerPredict', predictorInputs, [q, k, ...weights], { keepRate, coefficientKeep });
  const sparse = (indices) => runAsync('sparseAttention', ['q', 'k', 'v', 'indices'], [q, k, v, indices]);
  let kept = null; // the predictor's indices for the sparse case, made on its warm-up run
  const cases = {
    softmax: async () => Object.values(await attention.softmax(q, k, v)).flat(),
    castling: async () => Object.values(await attention.linearAngular(q, k, v, w)).flat(),
    sparsifiner: async () => {
      const [indices, ...rest] = await predict();
      rest.forEach((t) => t.dispose());
      return [...(await sparse(indices)), indices];
    },
    predictor: predict,
    sparse: async () => {
      if (!kept) {
        const [indices, ...rest] = await predict();
        rest.forEach((t) => t.dispose());
        kept = indices;
      }
      return sparse(kept);
    },
  };
  const names = values.cases.split(',');
  for (const name of names) if (!cases[name]) fail(`unknown case '${name}', expected one of ${Object.keys(cases).join(', ')}`);
  const dispose = (outputs) => outputs.forEach((t) => t?.dispose?.());
  for (const name of names) dispose(await cases[name]());
  const times = Object.fromEntries(names.map((name) => [name, []]));
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const name of names) {
      const start = performance.now();
      const outputs = await cases[name]();
      times[name].push(performance.now() - start);
      dispose(outputs);
    }
  }
  console.log(JSON.stringify(times));
}

/** The parent: alternates the two builds, run after run, and sums up. */
function parent() {
  if (positionals.length !== 2) usageError(`expected two addon paths (OLD.node NEW.node), got ${positionals.length}`);
  for (const path of positionals) if (!existsSync(path)) fail(`no addon at ${path}`);
  const builds = { old: resolve(positionals[0]), new: resolve(positionals[1]) };
  const times = { old: {}, new: {} }, toSoftmax = { old: {}, new: {} };
  const args = ['--child', '--tokens', values.tokens, '--cases', values.cases, '--rounds', values.rounds, '--keep-rate', values['keep-rate'], '--coefficient-keep', values['coefficient-keep']];
  for (let run = 0; run < Number(values.runs); run++) {
    for (const tag of run % 2 ? ['new', 'old'] : ['old', 'new']) {
      let out;
      try {
        // (The child's errors go straight to this terminal.)
        out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), ...args], { env: { ...process.env, CASTLING_ADDON_PATH: builds[tag] }, stdio: ['ignore', 'pipe', 'inherit'] });
      } catch {
        fail(`the run on ${builds[tag]} failed (its error is above)`);
      }
      const got = JSON.parse(out.toString());
      for (const [name, ms] of Object.entries(got)) {
        (times[tag][name] ??= []).push(...ms);
        if (got.softmax) (toSoftmax[tag][name] ??= []).push(...ms.map((t, i) => t / got.softmax[i]));
      }
    }
  }
  console.log(`N = ${values.tokens}, ${times.old[Object.keys(times.old)[0]].length} rounds per build; medians`);
  for (const name of Object.keys(times.old)) {
    const [before, after] = [median(times.old[name]), median(times.new[name])];
    const ratio = (tag) => (toSoftmax[tag][name] ? `${median(toSoftmax[tag][name]).toFixed(3)}x` : '-');
    console.log(`${name.padEnd(12)} old ${before.toFixed(2)} ms  new ${after.toFixed(2)} ms  new/old ${(after / before).toFixed(3)}  vs softmax: old ${ratio('old')} new ${ratio('new')}`);
  }
}

if (values.child) await child();
else parent();
