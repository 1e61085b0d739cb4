// Mistakes users met, each with the behaviour that replaced it: a --preset that trained softmax
// although castling is the default of a new model, CUDA advice that did nothing from an installed
// package, a misspelt option ignored, and a plain array where a Tensor goes.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { Tensor, VisionTransformer, presets } from '../lib/index.js';
import { installRoute } from '../scripts/install-route.mjs';
import { writeColourFolder } from './colour_folder.js';
import { scratchDirectory } from './helpers.js';

const root = scratchDirectory('castling-mistakes-');
const cli = join(import.meta.dirname, '..', 'dist', 'lib', 'cli.js');

describe('train folder --preset', () => {
  it('keeps castling, the default attention of a new model; --attention still chooses', async () => {
    const dir = await writeColourFolder(join(root, 'colours'), { blue: 2, red: 0 }, 3);
    const run = (args: string[]) => spawnSync(process.execPath, [cli, 'train', 'folder', dir, '--preset', 'deitTiny', '--image-size', '16', '--epochs', '1', '--batch-size', '4', '--val-fraction', '0.34', '--no-progress', ...args], { encoding: 'utf8' });
    const castling = run(['--out', join(root, 'castling.safetensors')]);
    expect(castling.status, castling.stderr).toBe(0);
    expect(castling.stdout).toMatch(/castling ViT 192 wide, 12 deep/);
    expect((await VisionTransformer.load(join(root, 'castling.safetensors'))).config.attention).toBe('castling');
    const softmax = run(['--attention', 'softmax', '--out', join(root, 'softmax.safetensors')]);
    expect(softmax.status, softmax.stderr).toBe(0);
    expect(softmax.stdout).toMatch(/softmax ViT 192 wide/);
  }, 120_000);
});

describe('the CUDA build advice', () => {
  it('CASTLING_CUDA=ON npm rebuild builds from source even where a prebuilt (CPU) binary matches', () => {
    expect(installRoute({ CASTLING_CUDA: 'ON' }, true)).toBe('build');
    expect(installRoute({ CASTLING_CUDA: 'auto' }, true)).toBe('build');
    expect(installRoute({ CASTLING_FORCE_BUILD: '1' }, true)).toBe('build');
    expect(installRoute({ CASTLING_CUDA: 'OFF' }, true)).toBe('prebuilt');
    expect(installRoute({}, true)).toBe('prebuilt');
    expect(installRoute({}, false)).toBe('build');
  });
});

describe('options and arguments', () => {
  const model = VisionTransformer.create({ ...presets.digits, depth: 1, seed: 2 });
  const images = Tensor.zeros([1, 1, 28, 28]);
  const raw = [{ pixels: new Uint8Array(28 * 28), width: 28, height: 28, channels: 1 as const }];

  it('a misspelt option is named, with the one meant', async () => {
    expect(() => model.classify(raw, { topk: 2 } as never)).toThrow(/classify: 'topk' is not an option \(did you mean 'top'\?\); expected 'top', 'batchSize', 'signal', 'nonFinite'/);
    await expect(model.predict(images, { nonfinite: 'refuse' } as never)).rejects.toThrow(/predict: 'nonfinite' is not an option \(did you mean 'nonFinite'\?\)/);
    await expect(model.embed(images, { signals: null } as never)).rejects.toThrow(/embed: 'signals' is not an option/);
    expect(await model.classify(raw, { top: 2 })).toHaveLength(1);
  });

  it('a plain array where a Tensor goes names Tensor.fromArray', async () => {
    await expect(model.predict([0, 1, 2] as never)).rejects.toThrow(/predict: images must be a Tensor \[batch, 1, 28, 28\], got a plain array of 3 entries: make it a Tensor with Tensor\.fromArray\(data, \[batch, 1, 28, 28\]\)/);
    await expect(model.embed(new Float32Array(784) as never)).rejects.toThrow(/got a Float32Array: make it a Tensor with Tensor\.fromArray/);
  });
});
