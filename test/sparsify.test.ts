// The Sparsifiner workflow's driver (sparsify.ts), apart from any data: what it asks of the
// training loop at each stage, what it leaves alone, and what it refuses.
import { describe, expect, it } from 'vitest';

import { VisionTransformer, presets } from '../lib/index.js';
import { attentionFlops } from '../lib/flops.js';
import { sparsify, type TrainingRun } from '../lib/train/sparsify.js';

describe('sparsify', () => {
  it('converts a softmax model, then runs stage 1 (reconstruction) and stage 2 (distilled fine-tuning)', async () => {
    const dense = VisionTransformer.create({ ...presets.digits, depth: 1, attention: 'softmax' });
    const denseHead = dense.parameters().get('head.weight')!.toFloat32Array();
    const runs: Array<Parameters<TrainingRun>[0]> = [];
    const train: TrainingRun = async (run) => {
      runs.push(run);
      return runs.length === 1 ? 0.5 : 0.75;
    };
    const stages: string[] = [];
    const result = await sparsify(dense, train, { keepRate: 0.5, coefficientKeep: 1, reconstructionEpochs: 3, finetuneEpochs: 4, seed: 7, onStage: (s) => stages.push(s) });
    expect(stages).toEqual(['stage 1: attention reconstruction (backbone frozen)', 'stage 2: fine-tuning with sparse attention']);
    expect(result.sparse.config).toMatchObject({ attention: 'sparsifiner', keepRate: 0.5, coefficientKeep: 1, sharedBasis: false });
    expect(runs.map((r) => r.model)).toEqual([result.sparse, result.sparse]);
    expect(runs[0]).toMatchObject({ stage: 'reconstruction', epochs: 3, lr: 1e-2, weightDecay: 0, seed: 8 });
    expect(runs[0]!.distillation).toBeUndefined();
    expect(runs[1]).toMatchObject({ epochs: 4, lr: 3e-4, seed: 9, distillation: { teacher: dense, weight: 0.5, temperature: 2 } });
    expect(runs[1]!.stage).toBeUndefined();
    expect(runs[1]!.weightDecay).toBeUndefined(); // the loop's default
    expect(result.reconstructedAccuracy).toBe(0.5);
    expect(result.sparseAccuracy).toBe(0.75);
    // The dense model is left as it was, and the FLOPs are counted per block and image.
    expect(dense.config.attention).toBe('softmax');
    expect(dense.parameters().get('head.weight')!.toFloat32Array()).toEqual(denseHead);
    const d = presets.digits.width / presets.digits.heads;
    expect(result.denseAttentionFlops).toBe(presets.digits.heads * attentionFlops('softmax', 'forward', 17, d));
    expect(result.sparseAttentionFlops).toBe(presets.digits.heads * attentionFlops('sparsifiner', 'forward', 17, d, { keepRate: 0.5, coefficientKeep: 1 }));
    // Distillation off, and the stage-2 rate asked for.
    runs.length = 0;
    (await sparsify(dense, train, { distillation: 0, finetuneLr: 5e-5 })).sparse.dispose();
    expect(runs[1]!.lr).toBe(5e-5);
    expect(runs[1]!.distillation).toBeUndefined();
    result.sparse.dispose();
    dense.dispose();
  });

  it('refuses a model that is not softmax', async () => {
    const castling = VisionTransformer.create({ ...presets.digits, depth: 1, attention: 'castling' });
    await expect(sparsify(castling, async () => 1)).rejects.toThrow(/a Sparsifiner model is made from a softmax model, not a castling one/);
    castling.dispose();
  });
});
