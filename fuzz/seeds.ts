// The seed corpus, generated: small valid inputs of each kind the targets read (model files of
// the three attention kinds, a timm-layout file, a training checkpoint, images, export configs).
// Mutations start from these, so every check past the first one gets reached.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import sharp from 'sharp';

import { AdamW, VisionTransformer, presets, type VitConfig } from '../lib/index.js';
import { saveTrainingCheckpoint } from '../lib/entry/train.js';
import { writeSafetensors } from '../lib/entry/safetensors.js';
import { CHECKSUM_KEY } from '../lib/io/safetensors.js';
import { SeededRandom } from '../lib/nn/random.js';

/** A ViT small enough to load, run and export in milliseconds. */
export const tinyConfig: Partial<VitConfig> = { ...presets.digits, width: 24, depth: 1, heads: 3, mlpRatio: 2, numClasses: 4 };

async function bytesOf(write: (path: string) => Promise<void>): Promise<Uint8Array> {
  const dir = mkdtempSync(join(tmpdir(), 'castling-fuzz-seed-'));
  try {
    const path = join(dir, 'seed');
    await write(path);
    return new Uint8Array(readFileSync(path));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The same file without its checksum: with it, nearly every mutation is refused by the checksum
 * alone, and the checks behind it (shapes against the config, values, the config itself) would
 * see few inputs.
 */
function withoutChecksum(file: Uint8Array): Uint8Array {
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const end = 8 + Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(file.subarray(8, end))) as { __metadata__?: Record<string, string> };
  delete header.__metadata__?.[CHECKSUM_KEY];
  const text = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + text.length + file.length - end);
  new DataView(out.buffer).setBigUint64(0, BigInt(text.length), true);
  out.set(text, 8);
  out.set(file.subarray(end), 8 + text.length);
  return out;
}

/** Our model files: softmax, castling (both forms) and Sparsifiner. */
export async function modelFileSeeds(): Promise<Uint8Array[]> {
  const configs: Array<{ config: Partial<VitConfig>; castle?: boolean }> = [
    { config: { ...tinyConfig, attention: 'softmax' } },
    { config: { ...tinyConfig, attention: 'castling', convKernel: 3 } },
    { config: { ...tinyConfig, attention: 'castling', convKernel: 3, convForm: 'spatial' }, castle: true },
    { config: { ...tinyConfig, attention: 'sparsifiner', coefficientKeep: 2 } },
  ];
  const seeds: Uint8Array[] = [];
  for (const { config, castle } of configs) {
    const model = VisionTransformer.create(config);
    if (castle) model.castle();
    const file = await bytesOf((path) => model.save(path));
    seeds.push(file, withoutChecksum(file));
    model.dispose();
  }
  return seeds;
}

/** A checkpoint as timm writes one: the same tensor names, no metadata of ours. */
export async function timmFileSeeds(): Promise<Uint8Array[]> {
  const model = VisionTransformer.create({ ...tinyConfig, inChannels: 3 });
  const tensors = new Map([...model.parameters()].map(([name, t]) => [name, { shape: t.shape, data: t.toFloat32Array() }]));
  model.dispose();
  return [await bytesOf((path) => writeSafetensors(path, tensors))];
}

export async function checkpointSeeds(): Promise<Uint8Array[]> {
  const model = VisionTransformer.create({ ...tinyConfig, attention: 'sparsifiner', coefficientKeep: 2 });
  const optimizer = new AdamW(model.parameters(), { lr: 1e-3 });
  const settings = { epochs: 2, batchSize: 1, trainImages: 3, lr: 1e-3, weightDecay: 0.05, labelSmoothing: 0, augmentation: '{}' };
  const seed = await bytesOf((path) => saveTrainingCheckpoint(path, model, optimizer, { epoch: 1, step: 2, lossSum: 1.5, settings, random: new SeededRandom(4), order: [2, 0, 1] }));
  optimizer.dispose();
  model.dispose();
  return [seed, withoutChecksum(seed)];
}

/** PNG, JPEG and WebP, grey and colour, with and without alpha. */
export async function imageSeeds(): Promise<Uint8Array[]> {
  const seeds: Uint8Array[] = [];
  for (const channels of [1, 3, 4] as const) {
    const pixels = new Uint8Array(12 * 10 * channels).map((_, i) => (i * 37) % 256);
    const image = () => sharp(pixels, { raw: { width: 12, height: 10, channels } });
    seeds.push(new Uint8Array(await image().png().toBuffer()));
    seeds.push(new Uint8Array(await image().webp().toBuffer()));
    if (channels !== 4) seeds.push(new Uint8Array(await image().jpeg().toBuffer()));
  }
  return seeds;
}

/** Export requests: a config to create a model from, whether to castle it, the export options. */
export function onnxConfigSeeds(): Uint8Array[] {
  const requests = [
    { config: { ...tinyConfig, attention: 'softmax' }, castle: false, options: {} },
    { config: { ...tinyConfig, attention: 'castling', convKernel: 3 }, castle: true, options: { batch: 2 } },
    { config: { ...tinyConfig, attention: 'castling', convKernel: 3, convForm: 'spatial' }, castle: true, options: { output: 'embeddings' } },
    { config: { ...tinyConfig, attention: 'sparsifiner', coefficientKeep: 2 }, castle: false, options: { batch: 1, output: 'logits' } },
  ];
  return requests.map((r) => new TextEncoder().encode(JSON.stringify(r)));
}
