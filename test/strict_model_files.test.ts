// Model files that would otherwise load or run silently wrong, or exhaust memory: a config of
// gigabytes in a file of a few hundred bytes, a renamed parameter, NaN weights, a file damaged
// after it was saved (its checksum), and outputs that overflow float32.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

import sharp from 'sharp';
import { describe, expect, it } from 'vitest';

import { Tensor, VisionTransformer, presets, type VitConfig } from '../lib/index.js';
import { serveModel } from '../lib/entry/serve.js';
import { readSafetensors, writeSafetensors } from '../lib/entry/safetensors.js';
import { CHECKSUM_KEY } from '../lib/io/safetensors.js';
import { randomArray, randomizedModel, scratchDirectory } from './helpers.js';

const dir = scratchDirectory('castling-strict-');

const tiny: Partial<VitConfig> = { imageSize: 12, patchSize: 4, inChannels: 2, numClasses: 5, width: 24, depth: 2, heads: 2, mlpRatio: 2, seed: 3 };

/** The model's tensors as save() would write them, with `change` applied, under our metadata. */
async function edited(model: VisionTransformer, name: string, change: (tensors: Map<string, { shape: number[]; data: Float32Array }>) => void): Promise<string> {
  const path = join(dir, name);
  await model.save(path);
  const { tensors, metadata } = await readSafetensors(path);
  const plain = new Map([...tensors].map(([k, t]) => [k, { shape: t.shape, data: t.data }]));
  change(plain);
  await writeSafetensors(path, plain, metadata); // (no checksum: the edit alone is under test)
  return path;
}

describe('strict model files', () => {
  it('a config far past the memory budget is refused before anything is allocated, in a file or given to create', () => {
    // Without the check, the first took 80 s and 6.7 GB (or an out-of-memory kill) and the second
    // ended the process with an uncaught std::bad_alloc: both run in a child with a time limit.
    const module = join(import.meta.dirname, '..', 'dist', 'lib', 'index.js');
    const safetensors = join(import.meta.dirname, '..', 'dist', 'lib', 'entry', 'safetensors.js');
    const script = `
      const { VisionTransformer } = await import(${JSON.stringify(module)});
      const { writeSafetensors } = await import(${JSON.stringify(safetensors)});
      for (const [name, config] of [['wide', { width: 8192, heads: 64, depth: 24 }], ['deep', { width: 64, heads: 1, depth: 2 ** 20 }]]) {
        const path = ${JSON.stringify(dir)} + '/' + name + '.safetensors';
        await writeSafetensors(path, {}, { format: 'castling-vit', config: JSON.stringify(config) });
        await VisionTransformer.load(path).then(() => console.log(name + ' loaded'), (e) => console.log(e.message));
        try { VisionTransformer.create(config); console.log(name + ' created'); } catch (e) { console.log(e.message); }
      }`;
    const started = Date.now();
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    expect(child.signal, child.stderr).toBeNull();
    expect(Date.now() - started).toBeLessThan(10_000);
    const lines = child.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/wide\.safetensors: a ViT 8192 wide and 24 deep \(224² images\) has \d+ parameters and needs \d+\.\d GiB, more than the memory budget of [\d.]+ GiB \(half of this machine's memory\); pass \{ memoryBudget \}/);
    expect(lines[1]).toMatch(/^VisionTransformer\.create: a ViT 8192 wide and 24 deep .* needs \d+\.\d GiB/);
    expect(lines[2]).toMatch(/deep\.safetensors: a ViT 64 wide and 1048576 deep .* needs \d+\.\d GiB/);
    expect(lines[3]).toMatch(/^VisionTransformer\.create: a ViT 64 wide and 1048576 deep/);
    expect(lines).toHaveLength(4);
  });

  it('memoryBudget moves the limit both ways', async () => {
    expect(() => VisionTransformer.create(tiny, { memoryBudget: 1000 })).toThrow(/VisionTransformer\.create: a ViT 24 wide and 2 deep \(12² images\) has \d+ parameters and needs [\d.]+ KiB, more than the memory budget of 1000 bytes/);
    const model = VisionTransformer.create(tiny, { memoryBudget: 10 * 2 ** 20 });
    const path = join(dir, 'budget.safetensors');
    await model.save(path);
    await expect(VisionTransformer.load(path, { memoryBudget: 4096 })).rejects.toThrow(/budget\.safetensors: (its tensors need|a ViT 24 wide)/);
    expect((await VisionTransformer.load(path, { memoryBudget: 10 * 2 ** 20 })).config.width).toBe(24);
    expect(() => VisionTransformer.create(tiny, { memoryBudget: -1 })).toThrow(/memoryBudget is -1, expected a positive number of bytes/);
  });

  it('a model file of our format missing a parameter of its own config is refused (it used to be initialised silently)', async () => {
    const model = randomizedModel(tiny, 0.3);
    const renamed = await edited(model, 'renamed.safetensors', (tensors) => {
      tensors.set('blocks.1.mlp.fc1.weigth', tensors.get('blocks.1.mlp.fc1.weight')!);
      tensors.delete('blocks.1.mlp.fc1.weight');
    });
    await expect(VisionTransformer.load(renamed)).rejects.toThrow(/renamed\.safetensors: the castling-vit config in the file's metadata has 'blocks\.1\.mlp\.fc1\.weight', which the file does not hold/);
    // Still loads: a softmax file as castling (its convolutions fresh), and a fresh head.
    const path = join(dir, 'softmax.safetensors');
    await model.save(path);
    expect((await VisionTransformer.load(path, { config: { attention: 'castling' } })).loadReport.initialised).toEqual(['blocks.0.attn.dconv.weight', 'blocks.1.attn.dconv.weight']);
    const fresh = await VisionTransformer.load(path, { config: { numClasses: 3 }, freshHead: true });
    expect(fresh.loadReport).toMatchObject({ initialised: ['head.weight', 'head.bias'], ignored: ['head.weight', 'head.bias'] });
  });

  it('NaN or infinite weights are refused unless allowed', async () => {
    const model = randomizedModel(tiny, 0.3);
    const path = await edited(model, 'nan.safetensors', (tensors) => {
      tensors.get('blocks.0.attn.proj.weight')!.data[7] = Number.NaN;
    });
    await expect(VisionTransformer.load(path)).rejects.toThrow(/nan\.safetensors: tensor 'blocks\.0\.attn\.proj\.weight' holds NaN at element 7/);
    const allowed = await VisionTransformer.load(path, { allowNonFinite: true });
    expect(Number.isNaN(allowed.parameters().get('blocks.0.attn.proj.weight')!.toFloat32Array()[7])).toBe(true);
 
    // The CLI: refused, named, and loaded with --allow-non-finite (its NaN probabilities then shown).
    const grey = randomizedModel({ ...presets.digits, depth: 1 }, 0.3);
    const digitsPath = await edited(grey, 'nan-digits.safetensors', (tensors) => {
      tensors.get('head.bias')!.data[0] = Number.NaN;
    });
    const image = join(dir, 'grey.png');
    await sharp({ create: { width: 28, height: 28, channels: 3, background: { r: 50, g: 50, b: 50 } } }).png().toFile(image);
    const cli = join(import.meta.dirname, '..', 'dist', 'lib', 'cli.js');
    const refused = spawnSync(process.execPath, [cli, 'predict', digitsPath, image], { encoding: 'utf8' });
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/nan-digits\.safetensors: tensor 'head\.bias' holds NaN at element 0.*--allow-non-finite/);
    const allowedCli = spawnSync(process.execPath, [cli, 'predict', digitsPath, image, '--allow-non-finite', '--json', '--top', '1'], { encoding: 'utf8' });
    expect(allowedCli.status, allowedCli.stderr).toBe(0);
    expect(JSON.parse(allowedCli.stdout)[0].classes).toHaveLength(1);
  });

  it('save writes a checksum that load verifies: a file damaged since names itself', async () => {
    const model = randomizedModel(tiny, 0.3);
    const path = join(dir, 'sum.safetensors');
    await model.save(path);
    expect((await readSafetensors(path)).metadata[CHECKSUM_KEY]).toMatch(/^[0-9a-f]{64}$/);
    const bytes = readFileSync(path);
    bytes[bytes.length - 3]! ^= 0x01; // a low bit of one weight: still finite, still plausible
    writeFileSync(path, bytes);
    await expect(VisionTransformer.load(path)).rejects.toThrow(/sum\.safetensors: its content does not match the checksum in its metadata/);
  });

  it('non-finite outputs: predict and embed pass them on unless told to refuse; classify and serve refuse them', async () => {
    // Finite weights whose products overflow float32: every logit is infinite, and so is the embedding.
    const model = randomizedModel(tiny, 0.3);
    model.parameters().get('norm.weight')!.set(new Float32Array(24).fill(3e38));
    model.parameters().get('norm.bias')!.set(new Float32Array(24).fill(3e38));
    const images = Tensor.fromArray(randomArray(2 * 2 * 12 * 12), [2, 2, 12, 12]);
    const logits = (await model.predict(images)).toFloat32Array();
    expect(logits.some((v) => !Number.isFinite(v))).toBe(true);
    await expect(model.predict(images, { nonFinite: 'refuse' })).rejects.toThrow(/^predict: the model produced a non-finite value \((-?Infinity|NaN)\) for image 0, class \d of its logits/);
    await expect(model.embed(images, { nonFinite: 'refuse' })).rejects.toThrow(/^embed: the model produced a non-finite value .* of its embeddings/);
    await expect(model.predict(images, { nonFinite: 'maybe' as 'allow' })).rejects.toThrow(/predict: nonFinite is "maybe", expected 'allow' or 'refuse'/);

    const rgb = randomizedModel({ ...presets.digits, inChannels: 3, depth: 1 }, 0.3);
    rgb.parameters().get('head.bias')!.set(new Float32Array(10).fill(Number.POSITIVE_INFINITY));
    const raw = { pixels: new Uint8Array(3 * 28 * 28).fill(100), width: 28, height: 28, channels: 3 as const };
    await expect(rgb.classify([raw])).rejects.toThrow(/predict: the model produced a non-finite value \(Infinity\) for image 0, class 0 of its logits/);
    expect((await rgb.classify([raw], { nonFinite: 'allow', top: 1 }))[0]).toHaveLength(1);
    const server = serveModel(rgb);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const png = await sharp({ create: { width: 28, height: 28, channels: 3, background: { r: 10, g: 200, b: 90 } } }).png().toBuffer();
      const answer = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/classify`, { method: 'POST', body: new Uint8Array(png) });
      expect(answer.status).toBe(500);
      expect(await answer.json()).toEqual({ error: 'the model produced non-finite values (NaN or infinity) for this image', code: 'ERR_CASTLING_NON_FINITE_OUTPUT' });
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('Tensor.fromArray names a value that is not a number', () => {
    expect(() => Tensor.fromArray([1, '2'] as unknown as number[], [2])).toThrow(/^Tensor\.fromArray: data\[1\] is '2' \(a string\), expected a number$/);
    expect(() => Tensor.fromArray([1, 2, undefined] as unknown as number[], [3])).toThrow(/data\[2\] is undefined/);
    expect(() => Tensor.fromArray([{}] as unknown as number[], [1])).toThrow(/data\[0\] is an object/);
    // A hole: an array with nothing at index 1.
    expect(() => Tensor.fromArray([1, , 3] as unknown as number[], [3])).toThrow(/data\[1\] is a hole/);
    expect(Tensor.fromArray([1, Number.NaN], [2]).toFloat32Array()[0]).toBe(1); // NaN is a number: predict's checks name it
  });
});
