// Where a DeiT-S pass's time goes, per op, in thread CPU time: predict or trainStep at 224² is
// run under the pool's trace (native/core/pool_trace.h) and the CPU time of every job's pieces is
// summed by the op that ran it, with the caller's serial time between jobs. Thread CPU time is what
// an op costs wherever it runs, so on a shared machine, whose wall-clock times drift by tens of
// percent within minutes, it still splits a pass reliably; the wall time is printed beside it. The
// linear layers' GFLOP/s per thread second are read against one thread's FMA peak (bench addon).
//
//   node scripts/op-cpu-profile.mjs [--kind castling|softmax] [--pass predict|train] [--batch 8] [--runs 3]
//
// Needs the TypeScript build (npm run build:ts) and the benchmark addon for the peak.
import { readCommandLine } from './command-line.mjs';

const { values, usageError, positiveIntegers } = readCommandLine(
  'op-cpu-profile',
  'usage: node scripts/op-cpu-profile.mjs [--kind castling|softmax] [--pass predict|train] [--batch 8] [--runs 3]',
  {
    options: {
      kind: { type: 'string', default: 'castling' },
      pass: { type: 'string', default: 'predict' },
      batch: { type: 'string', default: '1' },
      runs: { type: 'string', default: '3' },
    },
  },
);
if (!['castling', 'softmax'].includes(values.kind)) usageError(`--kind is '${values.kind}', expected castling or softmax`);
if (!['predict', 'train'].includes(values.pass)) usageError(`--pass is '${values.pass}', expected predict or train`);
positiveIntegers('batch', 'runs');
const { VisionTransformer, AdamW, presets } = await import('../dist/lib/index.js');
const { native } = await import('../dist/lib/native.js');
const { randomImages } = await import('../dist/bench/common.js');
const { measurePeak } = await import('../dist/bench/peak.js');

const batch = Number(values.batch), runs = Number(values.runs), kind = values.kind;
const images = randomImages(batch, 224);
const model = VisionTransformer.create({ ...presets.deitSmall, attention: kind });
let call;
if (values.pass === 'predict') {
  if (kind === 'castling') model.castle();
  call = async () => (await model.predict(images)).dispose();
} else {
  const optimizer = new AdamW(model.parameters(), { lr: 1e-4 });
  const labels = Array.from({ length: batch }, (_, i) => i % 1000);
  call = () => model.trainStep(images, labels, optimizer);
}
await call(); // plans recorded, weights packed

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const perOp = new Map();
const walls = [], works = [], serials = [];
for (let r = 0; r < runs; r++) {
  native.tracePool(true);
  const start = performance.now();
  await call();
  walls.push(performance.now() - start);
  const sums = new Map();
  let work = 0, serial = 0;
  for (const region of native.tracePool(false)) {
    const ms = region.pieceNs.reduce((a, b) => a + b, 0) / 1e6;
    sums.set(region.op, (sums.get(region.op) ?? 0) + ms);
    work += ms;
    serial += region.serialBeforeNs / 1e6;
  }
  for (const [op, ms] of sums) perOp.set(op, [...(perOp.get(op) ?? []), ms]);
  works.push(work);
  serials.push(serial);
}
const work = median(works);
console.log(`${kind} ${values.pass} batch ${batch}, ${runs} runs (medians): wall ${median(walls).toFixed(1)} ms, thread CPU ${work.toFixed(1)} ms in jobs, ${median(serials).toFixed(2)} ms serial`);
for (const [op, xs] of [...perOp].sort((a, b) => median(b[1]) - median(a[1]))) {
  console.log(`  ${(op || '(outside ops)').padEnd(32)} ${median(xs).toFixed(2).padStart(9)} ms  ${((100 * median(xs)) / work).toFixed(1).padStart(5)}%`);
}
// The linear layers' FLOPs (qkv, projection, two MLP layers per block, and the head), forward
// only or forward and both backward products, against one thread's peak.
const { width: w, depth, mlpRatio, numClasses } = presets.deitSmall;
const forward = batch * (depth * 2 * 197 * w * (3 * w + w + 2 * mlpRatio * w) + 2 * w * numClasses);
const linearMs = median(perOp.get('linear') ?? [0]) + median(perOp.get('linearBackward') ?? [0]);
const flops = values.pass === 'predict' ? forward : 3 * forward;
const rate = flops / linearMs / 1e6;
// One thread's peak on the CPU path the pass ran on; without the benchmark addon (not built, or
// CASTLING_ADDON_PATH naming an addon without one beside it) the share is left out, not NaN.
const path = native.backendInfo().isa;
const peak = await measurePeak(path, 1).then((gflops) => ({ gflops }), (error) => ({ error }));
const share = 'gflops' in peak
  ? `${((100 * rate) / peak.gflops).toFixed(0)}% of one thread's FMA peak (${peak.gflops.toFixed(0)} GFLOP/s on ${path}, measured now)`
  : `share of the FMA peak not measured (${peak.error instanceof Error ? peak.error.message : String(peak.error)})`;
console.log(`linear layers: ${rate.toFixed(1)} GFLOP/s per thread second, ${share}`);
