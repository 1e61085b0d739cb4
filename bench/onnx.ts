// `bench onnx`: castling-vit against onnxruntime-node on the same weights and the same graph.
// Each case exports one VisionTransformer to ONNX (lib/io/onnx/export_vit.ts), or for kind `mlp`
// builds the chain of its MLP products (bench/onnx/mlp_chain.ts), and times the two runtimes
// against each other (bench/onnx/interleaved.ts: the same outputs first, then interleaved rounds,
// medians and the median of the per-round ratios ours / onnxruntime).
import { Tensor, VisionTransformer, presets, resolveConfig, setThreads, tokenCount, type AttentionKind, type ConvForm } from '../lib/index.js';
import { vitFlops } from '../lib/nn/model_flops.js';
import { randomValues, type BenchRecord } from './common.js';
import { exportVit } from '../lib/io/onnx/export_vit.js';
import { ORT_INSTALL, createSessionWithOpCounts, loadOrt, type Ort } from './onnx/ort.js';
import { SETTLE_MS, caseRecords, formatOps, logTimes, measureCase, waitForQuiet, type Runner, type TimingOptions } from './onnx/interleaved.js';
import { formatProfile, profileBoth } from './onnx/profile.js';
import { encodeModel } from '../lib/io/onnx/schema.js';
import { InvalidArgValueError } from '../lib/errors.js';
import { mlpChain } from './onnx/mlp_chain.js';

/**
 * What is compared: softmax, castling (tokens conv), castling with the spatial conv, and the MLP
 * products alone (bench/onnx/mlp_chain.ts).
 */
const ONNX_KINDS = ['softmax', 'castling', 'castling-spatial', 'mlp'] as const;
export type OnnxKind = (typeof ONNX_KINDS)[number];

export interface OnnxBenchOptions extends TimingOptions {
  model?: 'deitTiny' | 'deitSmall';
  kinds?: OnnxKind[];
  images?: number[];
  /** Batch sizes at 224 pixels (larger images run batch 1 only). */
  batches?: number[];
  threads?: number;
  /** Also print where each runtime spends its time, by part of the model (bench/onnx/profile.ts). */
  profile?: boolean;
  log?: (line: string) => void;
}

function oursRunner(model: VisionTransformer, images: Tensor): Runner {
  return {
    async run() {
      const logits = await model.predict(images);
      const out = logits.toFloat32Array();
      logits.dispose();
      return out;
    },
  };
}

export async function benchOnnx(o: OnnxBenchOptions = {}): Promise<BenchRecord[]> {
  const log = o.log ?? (() => {});
  const kinds = o.kinds ?? ['softmax', 'castling'];
  for (const kind of kinds) {
    if (!ONNX_KINDS.includes(kind)) throw new InvalidArgValueError(`onnx: kind '${String(kind)}' is unknown, expected one of ${ONNX_KINDS.join(', ')}`);
  }
  const loaded = await loadOrt();
  if ('missing' in loaded) {
    log(`onnx: skipped: ${loaded.missing}`);
    return [{ skipped: `onnxruntime-node not available; ${ORT_INSTALL}` }];
  }
  const { ort, version } = loaded;
  const threads = o.threads ?? 2;
  setThreads(threads);
  const name = o.model ?? 'deitSmall';
  log(`onnxruntime-node ${version}: intraOpNumThreads ${threads}, interOpNumThreads 1, sequential, graphOptimizationLevel all; castling-vit setThreads(${threads})`);
  const records: BenchRecord[] = [];
  for (const image of o.images ?? [224, 448, 896]) {
    const batches = image === 224 ? (o.batches ?? [1, 8]) : [1];
    for (const kind of kinds) {
      if (kind === 'mlp') {
        records.push(...(await benchMlpChain(name, image, batches, threads, { ort, version }, o, log)));
        continue;
      }
      const attention: AttentionKind = kind === 'softmax' ? 'softmax' : 'castling';
      const convForm: ConvForm = kind === 'castling-spatial' ? 'spatial' : 'tokens';
      const model = VisionTransformer.create({ ...presets[name], attention, convForm, imageSize: image, seed: 1 });
      if (attention === 'castling') model.castle();
      const tokens = tokenCount(model.config);
      try {
        for (const batch of batches) {
          const label = `${name} ${kind} ${image}px batch ${batch}`;
          const dims = [batch, model.config.inChannels, image, image];
          const values = batch * model.config.inChannels * image * image;
          const bytes = encodeModel(exportVit(model, { batch }));
          const { session, ops } = await createSessionWithOpCounts(ort, bytes, threads);
          try {
            log(`${label}: ONNX graph ${(bytes.length / 1e6).toFixed(1)} MB; onnxruntime runs ${formatOps(ops)}`);
            const m = await measureCase({ label, dims, input: (seed) => randomValues(values, seed), ours: (images) => oursRunner(model, images), session }, ort, o, log);
            const base = { model: name, kind, image, tokens, batch, pass: 'forward', threads };
            records.push(...caseRecords(m, base, batch * vitFlops(model.config, 'forward'), version, ops, batch));
            logTimes(label, m, log);
            if (o.profile) {
              if (o.quietBelow !== undefined) await waitForQuiet(o.quietBelow);
              log(`${label}: time per pass by category (ours: predictProfiled; ORT: its profiler), 5 turns each, interleaved:`);
              const data = randomValues(values, 1);
              const images = Tensor.fromArray(data, dims);
              try {
                for (const line of formatProfile(await profileBoth(model, images, ort, bytes, data, threads, { runs: 5, settleMs: SETTLE_MS }))) log(`  ${line}`);
              } finally {
                images.dispose();
              }
            }
          } finally {
            await session.release();
          }
        }
      } finally {
        model.dispose();
      }
    }
  }
  return records;
}

/**
 * The `mlp` kind: the model's MLP products alone (bench/onnx/mlp_chain.ts) at its token count for
 * `image` pixels, per batch size.
 */
async function benchMlpChain(name: 'deitTiny' | 'deitSmall', image: number, batches: number[], threads: number, runtime: { ort: Ort; version: string }, o: OnnxBenchOptions, log: (line: string) => void): Promise<BenchRecord[]> {
  const config = resolveConfig({ ...presets[name], imageSize: image }); // an image size the model cannot take is refused here
  const tokens = tokenCount(config);
  const records: BenchRecord[] = [];
  for (const batch of batches) {
    const shape = { rows: tokens * batch, width: config.width, hidden: config.width * config.mlpRatio, depth: config.depth };
    const label = `${name} mlp ${image}px batch ${batch} (${config.depth} x ${shape.width} -> ${shape.hidden} -> ${shape.width}, ${shape.rows} rows)`;
    const chain = mlpChain(shape);
    const { session, ops } = await createSessionWithOpCounts(runtime.ort, chain.onnx, threads);
    try {
      log(`${label}: onnxruntime runs ${formatOps(ops)}`);
      const ours = (x: Tensor): Runner => ({
        async run() {
          const [y] = await chain.plan.run(x);
          const out = y!.toFloat32Array();
          y!.dispose();
          return out;
        },
      });
      const m = await measureCase({ label, dims: [shape.rows, shape.width], input: (seed) => randomValues(shape.rows * shape.width, seed), ours, session }, runtime.ort, o, log);
      records.push(...caseRecords(m, { model: name, kind: 'mlp', image, tokens, batch, pass: 'forward', threads }, chain.flops, runtime.version, ops));
      logTimes(label, m, log);
    } finally {
      await session.release();
      chain.dispose();
    }
  }
  return records;
}
