// Image files into model inputs: the pixels land where timm's evaluation transform puts them,
// normalised exactly; every way a source can be given reads the same; bad input gets an error
// that names the image; a model classifies files as predict() does its tensors, and keeps its
// preprocessing and labels on disk.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import sharp from 'sharp';
import { describe, expect, it } from 'vitest';

import { Tensor, VisionTransformer, imagenetPreprocessing, presets, readImages, type ImagePreprocessing } from '../lib/index.js';
import { DIGIT_SIZE, digitsPreprocessing, loadDigits } from '../lib/entry/digits.js';
import { resizeAndCrop } from '../lib/io/images.js';
import { readSafetensors, writeSafetensors } from '../lib/io/safetensors.js';
import { random, scratchDirectory } from './helpers.js';

const dir = scratchDirectory('castling-images-');

function randomPixels(width: number, height: number, channels: number): Uint8Array {
  return Uint8Array.from({ length: width * height * channels }, () => Math.floor(random() * 256));
}

function randomPreprocessing(channels: number, interpolation: ImagePreprocessing['interpolation'] = 'nearest'): ImagePreprocessing {
  return {
    mean: Array.from({ length: channels }, () => random()),
    std: Array.from({ length: channels }, () => 0.1 + random()),
    cropFraction: 1,
    interpolation,
  };
}

function png(pixels: Uint8Array, width: number, height: number, channels: 1 | 2 | 3 | 4): Promise<Buffer> {
  return sharp(pixels, { raw: { width, height, channels } }).png().toBuffer();
}

/** The float64 reference of one channel-first image: (pixel / 255 - mean) / std at the crop. */
function expected(pixels: Uint8Array, width: number, channels: number, size: number, left: number, top: number, p: ImagePreprocessing): Float32Array {
  const out = new Float32Array(channels * size * size);
  for (let c = 0; c < channels; c++) {
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const v = pixels[((top + y) * width + left + x) * channels + c]!;
        out[(c * size + y) * size + x] = (v / 255 - p.mean[c]!) / p.std[c]!;
      }
    }
  }
  return out;
}

describe('readImages', () => {
  it('crops the centre of the shorter side and normalises each channel exactly', async () => {
    // 37 x 23: the shorter side is 23, so at size 23 nothing is resampled and the crop starts at
    // x = round(14 / 2) = 7; at 17 x 30 (portrait, size 17) at y = round(13 / 2) = 6 (half to even).
    for (const [width, height, size, left, top] of [
      [37, 23, 23, 7, 0],
      [17, 30, 17, 0, 6],
      [1, 1, 1, 0, 0],
    ] as const) {
      const pixels = randomPixels(width, height, 3);
      const p = randomPreprocessing(3);
      const t = await readImages([await png(pixels, width, height, 3)], { size, channels: 3, preprocessing: p });
      expect(t.shape).toEqual([1, 3, size, size]);
      expect(t.toFloat32Array()).toEqual(expected(pixels, width, 3, size, left, top, p));
      t.dispose();
    }
  });

  it('reads a file, encoded bytes and raw pixels alike, a batch in order', async () => {
    const images = [randomPixels(29, 31, 3), randomPixels(29, 31, 3)];
    const encoded = await Promise.all(images.map((p) => png(p, 29, 31, 3)));
    const path = join(dir, 'second.png');
    writeFileSync(path, encoded[1]!);
    const p = randomPreprocessing(3, 'bicubic');
    const options = { size: 24, channels: 3, preprocessing: { ...p, cropFraction: 0.875 } };
    const fromBytes = await readImages(encoded, options);
    const mixed = await readImages([{ pixels: images[0]!, width: 29, height: 31, channels: 3 }, path], options);
    const second = await readImages([path], options);
    expect(fromBytes.shape).toEqual([2, 3, 24, 24]);
    expect(mixed.toFloat32Array()).toEqual(fromBytes.toFloat32Array());
    expect(second.toFloat32Array()).toEqual(fromBytes.toFloat32Array().subarray(3 * 24 * 24));
  });

  it('drops alpha, repeats grey into RGB and makes colour grey for one-channel models', async () => {
    const rgba = randomPixels(13, 13, 4);
    const rgb = Uint8Array.from({ length: 13 * 13 * 3 }, (_, i) => rgba[Math.floor(i / 3) * 4 + (i % 3)]!);
    const p = randomPreprocessing(3);
    const withAlpha = await readImages([await png(rgba, 13, 13, 4)], { size: 13, channels: 3, preprocessing: p });
    expect(withAlpha.toFloat32Array()).toEqual(expected(rgb, 13, 3, 13, 0, 0, p));

    const grey = randomPixels(11, 11, 1);
    const same = { mean: [0.2, 0.2, 0.2], std: [0.5, 0.5, 0.5], cropFraction: 1, interpolation: 'nearest' } as const;
    const asRgb = (await readImages([await png(grey, 11, 11, 1)], { size: 11, channels: 3, preprocessing: same })).toFloat32Array();
    const plane = 11 * 11;
    expect(asRgb.subarray(0, plane)).toEqual(expected(grey, 11, 1, 11, 0, 0, { ...same, mean: [0.2], std: [0.5] }));
    expect(asRgb.subarray(plane, 2 * plane)).toEqual(asRgb.subarray(0, plane));
    expect(asRgb.subarray(2 * plane)).toEqual(asRgb.subarray(0, plane));

    // Colour with r = g = b is its own grey.
    const greyAsRgb = Uint8Array.from({ length: 11 * 11 * 3 }, (_, i) => grey[Math.floor(i / 3)]!);
    const one = { mean: [0.2], std: [0.5], cropFraction: 1, interpolation: 'nearest' } as const;
    const back = await readImages([await png(greyAsRgb, 11, 11, 3)], { size: 11, channels: 1, preprocessing: one });
    expect(back.toFloat32Array()).toEqual(expected(grey, 11, 1, 11, 0, 0, one));
  });

  it('resizes as torchvision does for timm (shorter side to floor(size / crop), centre crop)', async () => {
    expect(resizeAndCrop(500, 375, 224, 0.875)).toEqual({ width: 341, height: 256, left: 58, top: 16 });
    expect(resizeAndCrop(375, 500, 224, 0.875)).toEqual({ width: 256, height: 341, left: 16, top: 58 });
    expect(resizeAndCrop(640, 480, 384, 1)).toEqual({ width: 512, height: 384, left: 64, top: 0 });
    expect(resizeAndCrop(3, 1000, 224, 0.9)).toEqual({ width: 248, height: 82666, left: 12, top: 41221 });
    // A flat image stays flat through every filter; a resized one is the right size.
    const flat = new Uint8Array(80 * 50 * 3).fill(77);
    for (const interpolation of ['bicubic', 'bilinear', 'nearest'] as const) {
      const p = { mean: [0, 0, 0], std: [1, 1, 1], cropFraction: 0.875, interpolation };
      const t = await readImages([{ pixels: flat, width: 80, height: 50, channels: 3 }], { size: 24, channels: 3, preprocessing: p });
      expect(t.shape).toEqual([1, 3, 24, 24]);
      expect(new Set(t.toFloat32Array())).toEqual(new Set([Math.fround(77 / 255)]));
    }
  });

  it('turns a photo upright by its EXIF orientation before cropping', async () => {
    // Stored 40 x 20, left half red, right half blue, orientation 6 (turn 90 degrees clockwise):
    // upright it is 20 x 40 with red on top. The 20 x 20 centre: red rows 0-9, blue rows 10-19.
    const pixels = new Uint8Array(40 * 20 * 3);
    for (let y = 0; y < 20; y++) for (let x = 0; x < 40; x++) pixels[(y * 40 + x) * 3 + (x < 20 ? 0 : 2)] = 255;
    const jpeg = await sharp(pixels, { raw: { width: 40, height: 20, channels: 3 } }).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toBuffer();
    const p = { mean: [0, 0, 0], std: [1, 1, 1], cropFraction: 1, interpolation: 'nearest' } as const;
    const t = (await readImages([jpeg], { size: 20, channels: 3, preprocessing: p })).toFloat32Array();
    const red = (y: number) => t[y * 20 + 10]!;
    const blue = (y: number) => t[2 * 400 + y * 20 + 10]!;
    expect(red(2)).toBeGreaterThan(0.9);
    expect(blue(2)).toBeLessThan(0.1);
    expect(red(17)).toBeLessThan(0.1);
    expect(blue(17)).toBeGreaterThan(0.9);
  });

  it('reads RGB with ImageNet preprocessing when only the size is given', async () => {
    const pixels = randomPixels(9, 9, 3);
    const source = [await png(pixels, 9, 9, 3)];
    const plain = await readImages(source, { size: 9 });
    const explicit = await readImages(source, { size: 9, channels: 3, preprocessing: imagenetPreprocessing });
    expect(plain.shape).toEqual([1, 3, 9, 9]);
    expect(plain.toFloat32Array()).toEqual(explicit.toFloat32Array());
    const grey = await readImages(source, { size: 9, channels: 1 });
    expect(grey.shape).toEqual([1, 1, 9, 9]);
    [plain, explicit, grey].forEach((t) => t.dispose());
  });

  it('names what was wrong with a bad source or option', async () => {
    const p = randomPreprocessing(3);
    const ok = await png(randomPixels(4, 4, 3), 4, 4, 3);
    const read = (sources: unknown[], o: Record<string, unknown> = {}) => readImages(sources as never, { size: 4, channels: 3, preprocessing: p, ...o } as never);
    await expect(read([])).rejects.toThrow(/non-empty array/);
    await expect(read([ok, join(dir, 'missing.png')])).rejects.toThrow(/could not read '.*missing\.png': Input file is missing/);
    await expect(read([ok, Buffer.from('not an image')])).rejects.toThrow(/image 1 \(12 encoded bytes\).*unsupported image format/);
    await expect(read([ok.subarray(0, 40)])).rejects.toThrow(/could not read image 0/);
    await expect(read([42])).rejects.toThrow(/image 0 is number, expected a path/);
    await expect(read([{ pixels: new Uint8Array(10), width: 2, height: 2, channels: 3 }])).rejects.toThrow(/could not read image 0 \(raw pixels\): raw pixels hold 10 bytes, expected width 2 x height 2 x channels 3 = 12/);
    await expect(read([{ pixels: new Uint8Array(12), width: 2.5, height: 2, channels: 3 }])).rejects.toThrow(/could not read image 0 \(raw pixels\): raw pixels need \{ pixels: Uint8Array/);
    await expect(read([ok], { size: 0 })).rejects.toThrow(/size is 0/);
    await expect(read([ok], { channels: 4 })).rejects.toThrow(/channels is 4, expected 1 \(grey\) or 3 \(RGB\)/);
    await expect(read([ok], { preprocessing: 'imagenet' })).rejects.toThrow(/readImages: preprocessing must be an object/);
    await expect(readImages([ok], null as never)).rejects.toThrow(/expected options \{ size/);
    await expect(read([ok], { preprocessing: { ...p, std: [1, 0, 1] } })).rejects.toThrow(/std is \[1,0,1\]: expected 3 finite positive/);
    await expect(read([ok], { preprocessing: { ...p, mean: [0.5] } })).rejects.toThrow(/mean is \[0.5\]: expected 3 finite/);
    await expect(read([ok], { preprocessing: { ...p, cropFraction: 0 } })).rejects.toThrow(/cropFraction is 0/);
    await expect(read([ok], { preprocessing: { ...p, interpolation: 'cubic' } })).rejects.toThrow(/interpolation is "cubic": expected 'bicubic'/);
    // An image claiming 10^10 pixels is refused before any of it is allocated.
    const huge = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000"><rect width="10" height="10"/></svg>');
    await expect(read([huge])).rejects.toThrow(/could not read image 0.*pixel limit/i);
  });
});

describe('VisionTransformer and image files', () => {
  const tiny = { ...presets.deitTiny, imageSize: 32, patchSize: 8, depth: 1, numClasses: 7, seed: 5 };

  it('classify gives the softmax of predict on readImages, most probable first', async () => {
    const model = VisionTransformer.create(tiny);
    const images = await Promise.all([45, 33, 64].map((w) => png(randomPixels(w, 35, 3), w, 35, 3)));
    const logits = await model.predict(await model.readImages(images));
    const values = logits.toFloat32Array();
    const results = await model.classify(images, { top: 4, batchSize: 2 });
    expect(results).toHaveLength(3);
    results.forEach((classes, i) => {
      const row = Array.from(values.subarray(i * 7, (i + 1) * 7));
      const max = Math.max(...row);
      const total = row.reduce((a, v) => a + Math.exp(v - max), 0);
      expect(classes).toHaveLength(4);
      for (let k = 0; k < 4; k++) {
        const { index, label, probability } = classes[k]!;
        expect(label).toBe(String(index));
        expect(probability).toBeCloseTo(Math.exp(row[index]! - max) / total, 12);
        if (k > 0) expect(probability).toBeLessThanOrEqual(classes[k - 1]!.probability);
      }
      expect(classes[0]!.index).toBe(row.indexOf(max));
    });
    expect((await model.classify(images.slice(0, 1), { top: 100 }))[0]).toHaveLength(7);
    await expect(model.classify(images, { top: 0 })).rejects.toThrow(/top is 0/);
    // An image in a later chunk is named by its place in the whole list.
    await expect(model.classify([...images, Buffer.from('not an image')], { batchSize: 2 })).rejects.toThrow(/could not read image 3 \(12 encoded bytes\)/);
    model.dispose();
    expect(() => model.classify(images)).toThrow(/disposed/);
  });

  it('keeps its preprocessing and labels on disk; a bad stored one is an error naming the file', async () => {
    const model = VisionTransformer.create(tiny);
    expect(model.preprocessing).toEqual({ mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], cropFraction: 0.875, interpolation: 'bicubic' });
    expect(model.labels).toBeNull();
    expect(() => {
      (model.preprocessing.mean as number[])[0] = 1;
    }).toThrow(TypeError);
    expect(() => (model.labels = ['a', 'b'])).toThrow(/array of 7 strings \(one per class\), got 2 entries/);
    expect(() => (model.preprocessing = { ...model.preprocessing, std: [1, 1] })).toThrow(/model.preprocessing.std/);
    const labels = ['ant', 'bee', 'cat', 'dog', 'eel', 'fox', 'gnu'];
    model.labels = labels;
    model.preprocessing = { mean: [0.5, 0.5, 0.5], std: [0.25, 0.5, 1], cropFraction: 0.9, interpolation: 'bilinear' };
    const path = join(dir, 'labelled.safetensors');
    await model.save(path);
    const back = await VisionTransformer.load(path);
    expect(back.labels).toEqual(labels);
    expect(back.preprocessing).toEqual(model.preprocessing);
    const image = await png(randomPixels(50, 40, 3), 50, 40, 3);
    expect(await back.classify([image])).toEqual(await model.classify([image]));
    expect((await back.classify([image]))[0]!.every((c) => c.label === labels[c.index])).toBe(true);
    const overridden = await VisionTransformer.load(path, { preprocessing: { cropFraction: 1 }, labels: labels.map((l) => l.toUpperCase()) });
    expect(overridden.preprocessing.cropFraction).toBe(1);
    expect(overridden.preprocessing.std).toEqual([0.25, 0.5, 1]);
    expect(overridden.labels![0]).toBe('ANT');
    // A model made from another (a Sparsifiner from a dense one, say) keeps them.
    const converted = VisionTransformer.from(back, { attention: 'castling' });
    expect(converted.labels).toEqual(labels);
    expect(converted.preprocessing).toEqual(back.preprocessing);

    const { tensors, metadata } = await readSafetensors(path);
    const rewrite = async (name: string, meta: Record<string, string>) => {
      const p = join(dir, name);
      await writeSafetensors(p, tensors, { ...metadata, ...meta });
      return p;
    };
    await expect(VisionTransformer.load(await rewrite('bad-json.safetensors', { preprocessing: '{mean' }))).rejects.toThrow(/bad-json.safetensors: the preprocessing in the file's metadata is not valid JSON/);
    await expect(VisionTransformer.load(await rewrite('bad-kind.safetensors', { preprocessing: '[0.5]' }))).rejects.toThrow(/bad-kind.safetensors: the preprocessing in the file's metadata is \[0.5\], expected an object/);
    await expect(VisionTransformer.load(await rewrite('bad-config.safetensors', { config: '[1]' }))).rejects.toThrow(/bad-config.safetensors: the config in the file's metadata is \[1\], expected an object of ViT options/);
    await expect(VisionTransformer.load(await rewrite('bad-std.safetensors', { preprocessing: '{"std":[1,-1,1]}' }))).rejects.toThrow(/bad-std.safetensors: preprocessing.std is \[1,-1,1\]/);
    await expect(VisionTransformer.load(await rewrite('bad-labels.safetensors', { labels: '["a"]' }))).rejects.toThrow(/bad-labels.safetensors: labels: expected an array of 7 strings/);
    // A file from before preprocessing was stored reads with the defaults.
    const { preprocessing: _, labels: __, ...older } = metadata;
    const old = join(dir, 'older.safetensors');
    await writeSafetensors(old, tensors, older);
    expect((await VisionTransformer.load(old)).preprocessing.cropFraction).toBe(0.875);
  });

  it('a digits model classifies PNG files of digits as predict does their normalised pixels', async () => {
    const model = VisionTransformer.create({ ...presets.digits, depth: 1, seed: 3 });
    model.preprocessing = digitsPreprocessing;
    const { test } = loadDigits();
    const pixels = DIGIT_SIZE * DIGIT_SIZE;
    const picks = [0, 150, 400, 1999];
    const bytes = picks.map((i) => Uint8Array.from(test.images.subarray(i * pixels, (i + 1) * pixels), (v) => Math.round(v * 255)));
    const files = await Promise.all(bytes.map((b, k) => png(b, DIGIT_SIZE, DIGIT_SIZE, 1).then((data) => (writeFileSync(join(dir, `digit${k}.png`), data), join(dir, `digit${k}.png`)))));
    const normalised = Float32Array.from(bytes.flatMap((b) => Array.from(b)), (v) => (v / 255 - 0.1307) / 0.3081);
    const logits = await model.predict(Tensor.fromArray(normalised, [picks.length, 1, DIGIT_SIZE, DIGIT_SIZE]));
    const fromFiles = await model.predict(await model.readImages(files));
    expect(fromFiles.toFloat32Array()).toEqual(logits.toFloat32Array());
  });

  it('castling-vit predict prints each file\'s classes, and a clear error for a bad file', async () => {
    const model = VisionTransformer.create(tiny);
    model.labels = ['ant', 'bee', 'cat', 'dog', 'eel', 'fox', 'gnu'];
    const modelPath = join(dir, 'cli.safetensors');
    await model.save(modelPath);
    const files = [0, 1].map((k) => join(dir, `cli${k}.png`));
    for (const f of files) writeFileSync(f, await png(randomPixels(48, 36, 3), 48, 36, 3));
    const cli = join(import.meta.dirname, '..', 'dist', 'lib', 'cli.js');
    const run = (...args: string[]) => spawnSync(process.execPath, [cli, '--threads', '1', 'predict', ...args], { encoding: 'utf8' });
    const json = run(modelPath, ...files, '--json', '--top', '2');
    expect(json.status, json.stderr).toBe(0);
    const printed = JSON.parse(json.stdout) as Array<{ image: string; classes: Array<{ label: string; probability: number }> }>;
    expect(printed.map((p) => p.image)).toEqual(files);
    expect(printed[1]!.classes).toEqual((await model.classify([files[1]!], { top: 2 }))[0]);
    const text = run(modelPath, ...files);
    expect(text.status).toBe(0);
    expect(text.stdout.trim().split('\n')).toHaveLength(2);
    expect(text.stdout).toMatch(/cli0\.png\s+(ant|bee|cat|dog|eel|fox|gnu)\s+\d+\.\d%/);
    // A timm-style file (weights only, no config in its metadata) with --preset, labels from a file.
    const timm = VisionTransformer.create({ ...presets.deitTiny, seed: 9 });
    const timmPath = join(dir, 'timm-style.safetensors');
    await writeSafetensors(timmPath, new Map([...timm.parameters()].map(([name, t]) => [name, { shape: t.shape, data: t.toFloat32Array() }])));
    const labelsPath = join(dir, 'labels.txt');
    writeFileSync(labelsPath, Array.from({ length: 1000 }, (_, i) => `class ${i}`).join('\n') + '\n');
    const withPreset = run(timmPath, files[0]!, '--preset', 'deitTiny', '--labels', labelsPath, '--json', '--top', '1');
    expect(withPreset.status, withPreset.stderr).toBe(0);
    const [best] = (await timm.classify([files[0]!], { top: 1 }))[0]!;
    expect(JSON.parse(withPreset.stdout)[0].classes[0]).toEqual({ ...best, label: `class ${best!.index}` });
    // Without --preset its tensors say the architecture (heads 64 wide, as timm's DeiT-Tiny).
    const inferred = run(timmPath, files[0]!, '--labels', labelsPath, '--json', '--top', '1');
    expect(inferred.status, inferred.stderr).toBe(0);
    expect(inferred.stdout).toBe(withPreset.stdout);
    const notTimm = join(dir, 'not-timm.safetensors');
    await writeSafetensors(notTimm, new Map([['weight', { shape: [2], data: new Float32Array(2) }]]));
    const noConfig = run(notTimm, files[0]!);
    expect(noConfig.status).toBe(1);
    expect(noConfig.stderr).toMatch(/no castling-vit config in its metadata and is not a timm ViT checkpoint/);
    expect(run(timmPath, files[0]!, '--preset', 'vitHuge').stderr).toMatch(/--preset must be one of deitTiny, deitSmall, deitBase, got 'vitHuge'/);
    const missing = run(modelPath, join(dir, 'nope.png'));
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/castling-vit: readImages: could not read '.*nope\.png': Input file is missing/);
  });
});
