// Training on a folder of images: the folder's layout read as torchvision's ImageFolder (and its
// mistakes named), a small model that learns three colour classes, and `castling-vit train
// folder` turning a timm-style softmax checkpoint into a castled model with the folder's labels.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, sep } from 'node:path';

import sharp from 'sharp';
import { describe, expect, it } from 'vitest';

import { VisionTransformer, presets } from '../lib/index.js';
import { listImageFolder } from '../lib/data/image_folder.js';
import { writeSafetensors } from '../lib/io/safetensors.js';
import { flipImages, trainImageFolder } from '../lib/train/image_folder.js';
import { random, scratchDirectory } from './helpers.js';

const root = scratchDirectory('castling-folder-');

const COLOURS: Record<string, [number, number, number]> = { blue: [2, 0, 1], green: [1, 2, 0], red: [0, 1, 2] };

/** An image whose channel `colour[0]` is bright, the others dim, with noise; odd sizes. */
async function colourImage(path: string, colour: [number, number, number]): Promise<void> {
  const width = 30 + Math.floor(random() * 20);
  const height = 24 + Math.floor(random() * 20);
  const pixels = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    for (let c = 0; c < 3; c++) pixels[i * 3 + c] = colour.indexOf(c) === 0 ? 150 + random() * 105 : random() * 100;
  }
  const image = sharp(pixels, { raw: { width, height, channels: 3 } });
  await (path.endsWith('.jpg') ? image.jpeg({ quality: 90 }) : image.png()).toFile(path);
}

/** root/name/<class>/<count images>, PNG and JPEG mixed, plus files that are not images. */
async function colourFolder(name: string, count: number): Promise<string> {
  const dir = join(root, name);
  for (const [cls, colour] of Object.entries(COLOURS)) {
    mkdirSync(join(dir, cls), { recursive: true });
    for (let i = 0; i < count; i++) await colourImage(join(dir, cls, `${String(i).padStart(2, '0')}.${i % 2 ? 'jpg' : 'png'}`), colour);
    writeFileSync(join(dir, cls, 'notes.txt'), 'not an image');
    writeFileSync(join(dir, cls, '.hidden.png'), 'not read');
  }
  return dir;
}

describe('image folders', () => {
  it('lists classes in name order and holds out the last files of each class', async () => {
    const dir = await colourFolder('listed', 10);
    const folder = listImageFolder(dir, { valFraction: 0.2 });
    expect(folder.classes).toEqual(['blue', 'green', 'red']);
    expect(folder.train.files).toHaveLength(24);
    expect(folder.val.files.map((f) => f.slice(dir.length + 1))).toEqual(['blue/08.png', 'blue/09.jpg', 'green/08.png', 'green/09.jpg', 'red/08.png', 'red/09.jpg']);
    expect(folder.val.labels).toEqual([0, 0, 1, 1, 2, 2]);
    expect(folder.train.labels.filter((l) => l === 2)).toHaveLength(8);
    // train/ and val/ subfolders are the split as they are.
    const split = join(root, 'split');
    for (const part of ['train', 'val']) {
      for (const cls of ['cat', 'dog']) {
        mkdirSync(join(split, part, cls), { recursive: true });
        await colourImage(join(split, part, cls, 'a.png'), COLOURS.red!);
      }
    }
    const fromSplit = listImageFolder(split);
    expect(fromSplit.classes).toEqual(['cat', 'dog']);
    expect(fromSplit.val.files.map((f) => f.slice(split.length + 1))).toEqual(['val/cat/a.png', 'val/dog/a.png']);
  });

  it('names what is wrong with a folder', () => {
    expect(() => listImageFolder(join(root, 'absent'))).toThrow(/absent: not a folder/);
    const one = join(root, 'one-class');
    mkdirSync(join(one, 'only'), { recursive: true });
    expect(() => listImageFolder(one)).toThrow(/at least 2\), found only 'only'/);
    const empty = join(root, 'empty-class');
    mkdirSync(join(empty, 'a'), { recursive: true });
    mkdirSync(join(empty, 'b'), { recursive: true });
    writeFileSync(join(empty, 'a', 'x.png'), '');
    expect(() => listImageFolder(empty)).toThrow(/empty-class\/b: no images/);
    const mismatched = join(root, 'mismatched');
    for (const [part, cls] of [['train', 'a'], ['train', 'b'], ['val', 'a'], ['val', 'c']]) {
      mkdirSync(join(mismatched, part!, cls!), { recursive: true });
      writeFileSync(join(mismatched, part!, cls!, 'x.png'), '');
    }
    expect(() => listImageFolder(mismatched)).toThrow(/train\/ and val\/ must have the same class folders \(train: a, b; val: a, c\)/);
    expect(() => listImageFolder(root, { valFraction: 1 })).toThrow(/valFraction is 1/);
  });

  it('flips the chosen images left-right, every channel and row', () => {
    const data = Float32Array.from({ length: 2 * 2 * 2 * 3 }, (_, i) => i);
    flipImages(data, [2, 2, 2, 3], [false, true]);
    expect(Array.from(data.subarray(0, 12))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(Array.from(data.subarray(12))).toEqual([14, 13, 12, 17, 16, 15, 20, 19, 18, 23, 22, 21]);
  });

  it('a small castling model learns the colour classes and is castled at the end', async () => {
    const folder = listImageFolder(await colourFolder('learn', 16), { valFraction: 0.25 });
    const model = VisionTransformer.create({ ...presets.deitTiny, imageSize: 32, patchSize: 8, width: 48, heads: 2, depth: 2, numClasses: 3, attention: 'castling', seed: 2 });
    const epochs: number[] = [];
    const result = await trainImageFolder({ folder, model, epochs: 8, batchSize: 12, lr: 2e-3, onEpoch: (e) => epochs.push(e.valAccuracy) });
    expect(epochs).toHaveLength(8);
    expect(model.castled).toBe(true);
    expect(result.valAccuracy).toBeGreaterThanOrEqual(0.9);
    expect(result.valAccuracy).toBe(result.accuracyBeforeSwitch); // the schedule ended the branch at 40%
    await expect(trainImageFolder({ folder, model: VisionTransformer.create({ ...presets.digits, depth: 1 }) })).rejects.toThrow(/the model has 10 classes, the folder 3 \(blue, green, red\)/);
  }, 60_000);

  it('castling-vit train folder: a timm-style softmax checkpoint becomes a castled model with the folder\'s labels', async () => {
    const dir = await colourFolder('cli', 6);
    const timm = VisionTransformer.create({ ...presets.deitTiny, seed: 4 });
    const timmPath = join(root, 'timm.safetensors');
    await writeSafetensors(timmPath, new Map([...timm.parameters()].map(([name, t]) => [name, { shape: t.shape, data: t.toFloat32Array() }])));
    const out = join(root, 'colours.safetensors');
    const cli = join(import.meta.dirname, '..', 'dist', 'lib', 'cli.js');
    const run = spawnSync(
      process.execPath,
      [cli, 'train', 'folder', dir, '--from', timmPath, '--preset', 'deitTiny', '--attention', 'castling', '--epochs', '2', '--batch-size', '8', '--val-fraction', '0.34', '--crop-scale', '0.5,1', '--out', out, '--no-progress'],
      { encoding: 'utf8', env: { ...process.env, CASTLING_THREADS: '2' } },
    );
    // Fresh: the 12 blocks' convolutions of v and the head (3 classes, not 1000).
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/3 classes \(blue, green, red\): 12 images to train, 6 held out; castling ViT 192 wide, 12 deep, 224² images, from .*timm\.safetensors \(14 tensors fresh\)/);
    expect(run.stdout).toMatch(/epoch  2  loss \d\.\d{4}  held-out accuracy \d+\.\d\d%/);
    expect(run.stdout).toMatch(/castled: held-out accuracy/);
    const model = await VisionTransformer.load(out);
    expect(model.castled).toBe(true);
    expect(model.labels).toEqual(['blue', 'green', 'red']);
    expect(model.config.numClasses).toBe(3);
    const fresh = await VisionTransformer.load(timmPath, { config: { ...presets.deitTiny, numClasses: 3 }, freshHead: true });
    expect(fresh.loadReport.initialised).toEqual(['head.weight', 'head.bias']);
    expect(fresh.loadReport.ignored).toEqual(['head.weight', 'head.bias']);
    await expect(VisionTransformer.load(timmPath, { config: { ...presets.deitTiny, numClasses: 3 } })).rejects.toThrow(/'head.weight' has shape \[1000, 192\], the config needs \[3, 192\]/);
    // predict takes folders too: every image under them, in name order.
    const predicted = spawnSync(process.execPath, [cli, 'predict', out, dir, '--json', '--top', '1'], { encoding: 'utf8' });
    expect(predicted.status, predicted.stderr).toBe(0);
    const listed = JSON.parse(predicted.stdout) as Array<{ image: string; classes: Array<{ label: string }> }>;
    expect(listed.map((r) => r.image.slice(dir.length + 1))).toEqual(['blue', 'green', 'red'].flatMap((c) => [0, 1, 2, 3, 4, 5].map((i) => join(c, `0${i}.${i % 2 ? 'jpg' : 'png'}`))));
    expect(listed.every((r) => ['blue', 'green', 'red'].includes(r.classes[0]!.label))).toBe(true);
    // evaluate: the same images, accuracy by class folder against the model's labels.
    const evaluated = spawnSync(process.execPath, [cli, 'evaluate', out, dir, '--json', '--top', '2'], { encoding: 'utf8' });
    expect(evaluated.status, evaluated.stderr).toBe(0);
    const report = JSON.parse(evaluated.stdout) as { images: number; top1: number; top: number; topK: number; perClass: Array<{ class: string; images: number; correct: number }> };
    const agree = listed.filter((r) => r.classes[0]!.label === r.image.slice(dir.length + 1).split(sep)[0]).length;
    expect(report).toMatchObject({ images: 18, top: 2, top1: agree / 18 });
    expect(report.topK).toBeGreaterThanOrEqual(report.top1);
    expect(report.perClass.map((c) => [c.class, c.images])).toEqual([['blue', 6], ['green', 6], ['red', 6]]);
    expect(report.perClass.reduce((a, c) => a + c.correct, 0)).toBe(agree);
    const strange = join(root, 'strange');
    for (const cls of ['purple', 'red']) {
      mkdirSync(join(strange, cls), { recursive: true });
      await colourImage(join(strange, cls, 'a.png'), COLOURS.red!);
    }
    const unknown = spawnSync(process.execPath, [cli, 'evaluate', out, strange], { encoding: 'utf8' });
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toMatch(/class folder\(s\) 'purple' of .*strange are not among the model's labels \(blue, green, red\)/);
    const emptyDir = join(root, 'no-images');
    mkdirSync(join(emptyDir, 'sub'), { recursive: true });
    writeFileSync(join(emptyDir, 'sub', 'notes.txt'), 'not an image');
    const empty = spawnSync(process.execPath, [cli, 'predict', out, emptyDir], { encoding: 'utf8' });
    expect(empty.status).toBe(1);
    expect(empty.stderr).toMatch(/no image files in .*no-images/);
    const badCrop = spawnSync(process.execPath, [cli, 'train', 'folder', dir, '--crop-scale', '0.9,0.2'], { encoding: 'utf8' });
    expect(badCrop.status).toBe(1);
    expect(badCrop.stderr).toMatch(/'0.9,0.2' is invalid. expected min,max with 0 < min <= max <= 1/);
    // --attention sparsifiner: a new softmax model trained on the folder, then stages 1 and 2.
    const sparseOut = join(root, 'sparse.safetensors');
    const sparse = spawnSync(
      process.execPath,
      [cli, 'train', 'folder', dir, '--attention', 'sparsifiner', '--image-size', '64', '--epochs', '1', '--stage1-epochs', '1', '--stage2-epochs', '1', '--batch-size', '6', '--val-fraction', '0.34', '--out', sparseOut, '--no-progress'],
      { encoding: 'utf8' },
    );
    expect(sparse.status, sparse.stderr).toBe(0);
    expect(sparse.stdout).toMatch(/softmax ViT 192 wide, 12 deep, 64² images\n-- dense softmax model\n/);
    expect(sparse.stdout).toMatch(/-- stage 1: attention reconstruction \(backbone frozen\)\n[^]*-- stage 2: fine-tuning with sparse attention\n/);
    expect(sparse.stdout).toMatch(/sparsifiner \(keep 0.25\): \d+\.\d\d% after stage 1, \d+\.\d\d% after stage 2/);
    const sparseModel = await VisionTransformer.load(sparseOut);
    expect(sparseModel.config.attention).toBe('sparsifiner');
    expect(sparseModel.labels).toEqual(['blue', 'green', 'red']);
    sparseModel.dispose();
    // A Sparsifiner model is made from a softmax one, not from the castled model above.
    const fromCastled = spawnSync(process.execPath, [cli, 'train', 'folder', dir, '--attention', 'sparsifiner', '--from', out, '--no-progress'], { encoding: 'utf8' });
    expect(fromCastled.status).toBe(1);
    expect(fromCastled.stderr).toMatch(/colours\.safetensors is a castling model: a Sparsifiner model is made from a softmax one/);
  }, 120_000);
});
