// Whether a castling model runs in training form (the auxiliary masked softmax branch on) or in
// inference form (the linear-angular attention alone) is in its config and its file, shown by
// loadReport and `castling-vit info`, and chosen on purpose: created and converted models start in
// training form, a castling checkpoint from elsewhere loads in inference form, files of ours keep
// theirs, and config.castlingForm overrides.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { Tensor, VisionTransformer, type VitConfig } from '../lib/index.js';
import { writeSafetensors } from '../lib/entry/safetensors.js';
import { randomArray, randomizedModel, scratchDirectory } from './helpers.js';

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));
const release = `${fixtures}torch-castling-tokens.safetensors`;
const root = scratchDirectory('castling-form-');
const cli = join(import.meta.dirname, '..', 'dist', 'lib', 'cli.js');

const tiny: Partial<VitConfig> = { imageSize: 16, patchSize: 4, inChannels: 3, numClasses: 5, width: 24, depth: 2, heads: 3, mlpRatio: 2, seed: 4 };

async function logits(model: VisionTransformer): Promise<Float32Array> {
  const images = Tensor.fromArray(randomArray(2 * 3 * 16 * 16), [2, 3, 16, 16]);
  const out = await model.predict(images);
  images.dispose();
  return out.toFloat32Array();
}

describe('castlingForm', () => {
  it('a created castling model is in training form until castle(), and its config says so', () => {
    const model = VisionTransformer.create({ ...tiny, attention: 'castling' });
    expect(model.config.castlingForm).toBe('training');
    expect(model.auxTau).toBe(0.02);
    model.castle();
    expect(model.config.castlingForm).toBe('inference');
    expect(model.auxTau).toBeNull();
    const castled = VisionTransformer.create({ ...tiny, attention: 'castling', castlingForm: 'inference' });
    expect(castled.castled).toBe(true);
    expect(() => VisionTransformer.create({ ...tiny, castlingForm: 'eval' as never })).toThrow(/config\.castlingForm is 'eval', expected 'training' \(the auxiliary branch on\) or 'inference' \(castled\)/);
  });

  it("Castling-ViT's checkpoints load in inference form, and { castlingForm: 'training' } turns the branch on", async () => {
    const asReleased = await VisionTransformer.load(release);
    expect(asReleased.config.castlingForm).toBe('inference');
    expect(asReleased.loadReport.castlingForm).toMatch(/^inference form \(the linear-angular attention alone\): a castling checkpoint without castling-vit's metadata/);
    const training = await VisionTransformer.load(release, { config: { castlingForm: 'training' } });
    expect(training.auxTau).toBe(0.02);
    expect(training.loadReport.castlingForm).toMatch(/^training form .*: as given to load\(\)/);
    expect(await logits(training)).not.toEqual(await logits(asReleased));
  });

  it('a softmax checkpoint made castling starts in training form (ours, timm\'s, or VisionTransformer.from)', async () => {
    const soft = randomizedModel({ ...tiny, attention: 'softmax' }, 0.3);
    const own = join(root, 'softmax.safetensors');
    await soft.save(own);
    const timm = join(root, 'timm.safetensors');
    await writeSafetensors(timm, new Map([...soft.parameters()].map(([k, t]) => [k, { shape: t.shape, data: t.toFloat32Array() }])));
    for (const path of [own, timm]) {
      const model = await VisionTransformer.load(path, { config: { attention: 'castling', heads: 3 } });
      expect(model.config.castlingForm, path).toBe('training');
      expect(model.auxTau).toBe(0.02);
      expect(model.loadReport.castlingForm).toMatch(/^training form .*: a softmax checkpoint made castling, to be fine-tuned as the paper trains/);
      const inference = await VisionTransformer.load(path, { config: { attention: 'castling', heads: 3, castlingForm: 'inference' } });
      expect(inference.castled).toBe(true);
    }
    expect(VisionTransformer.from(soft, { attention: 'castling' }).config.castlingForm).toBe('training');
    expect(soft.loadReport.castlingForm).toBeUndefined(); // (softmax models have no form)
  });

  it('files of ours keep their form; castling-vit info shows it', async () => {
    const model = randomizedModel({ ...tiny, attention: 'castling' }, 0.3);
    const before = join(root, 'before-switch.safetensors');
    await model.save(before);
    model.castle();
    const after = join(root, 'castled.safetensors');
    await model.save(after);
    expect((await VisionTransformer.load(before)).config.castlingForm).toBe('training');
    expect((await VisionTransformer.load(after)).config.castlingForm).toBe('inference');
    const info = spawnSync(process.execPath, [cli, 'info', before], { encoding: 'utf8' });
    expect(info.status, info.stderr).toBe(0);
    expect(info.stdout).toMatch(/attention: +castling, tokens convolution of 9; training form \(the auxiliary masked softmax branch on beside the linear-angular attention, until castle\(\)\): the file was saved before the switch/);
    const json = JSON.parse(spawnSync(process.execPath, [cli, 'info', release, '--json'], { encoding: 'utf8' }).stdout) as { config: VitConfig };
    expect(json.config.castlingForm).toBe('inference');
    // --castling-form chooses on the command line: ONNX of the weights saved before the switch.
    const chosen = spawnSync(process.execPath, [cli, 'info', before, '--castling-form', 'inference'], { encoding: 'utf8' });
    expect(chosen.stdout).toMatch(/inference form \(the linear-angular attention alone\): as given to load\(\)/);
    expect(spawnSync(process.execPath, [cli, 'export-onnx', before, join(root, 'm.onnx')], { encoding: 'utf8' }).stderr).toMatch(/--castling-form inference exports these weights without the branch/);
    const exported = spawnSync(process.execPath, [cli, 'export-onnx', before, join(root, 'm.onnx'), '--castling-form', 'inference'], { encoding: 'utf8' });
    expect(exported.status, exported.stderr).toBe(0);
    const bad = spawnSync(process.execPath, [cli, 'predict', before, 'x.png', '--castling-form', 'eval'], { encoding: 'utf8' });
    expect(bad.stderr).toMatch(/--castling-form <form>' argument 'eval' is invalid\. expected 'inference' or 'training', got 'eval'/);
  });
});
