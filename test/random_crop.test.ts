// Training's random-resized crop (torchvision's RandomResizedCrop): the regions it draws (inside
// the image, area and aspect within their ranges, the fallback), its option errors, that
// readImages cuts the region from the upright image before resizing, and that a training run's
// crops depend on its seed alone.
import { join } from 'node:path';

import sharp from 'sharp';
import { describe, expect, it } from 'vitest';

import { VisionTransformer, presets } from '../lib/index.js';
import { listImageFolder } from '../lib/data/image_folder.js';
import { readImagesNumbered } from '../lib/io/images.js';
import { SeededRandom } from '../lib/nn/random.js';
import { trainImageFolder } from '../lib/train/image_folder.js';
import { checkRandomCrop, randomCropRegion } from '../lib/train/random_crop.js';
import { writeColourFolder } from './colour_folder.js';
import { random, scratchDirectory } from './helpers.js';

const root = scratchDirectory('castling-crop-');

describe('randomCropRegion', () => {
  it('draws regions inside the image with area and aspect within their ranges (up to rounding)', () => {
    const rng = new SeededRandom(Math.floor(random() * 2 ** 32));
    const o = checkRandomCrop({ scale: [0.2, 0.6], ratio: [0.5, 2] });
    for (const [width, height] of [[640, 480], [37, 211], [1000, 1000], [3, 2]] as const) {
      for (let draw = 0; draw < 200; draw++) {
        const r = randomCropRegion(width, height, rng, o);
        expect(r.left >= 0 && r.top >= 0 && r.width >= 1 && r.height >= 1).toBe(true);
        expect(r.left + r.width <= width && r.top + r.height <= height).toBe(true);
        if (width < 30) continue; // tiny images: rounding (or the fallback) decides
        const share = (r.width * r.height) / (width * height);
        const slack = (r.width + r.height + 1) / (width * height); // a pixel of rounding on each side
        expect(share).toBeGreaterThanOrEqual(0.2 - slack);
        expect(share).toBeLessThanOrEqual(0.6 + slack);
        const aspect = r.width / r.height;
        expect(aspect).toBeGreaterThanOrEqual(0.5 * (1 - 2 / r.height) - 1e-9);
        expect(aspect).toBeLessThanOrEqual(2 * (1 + 2 / r.height) + 1e-9);
      }
    }
  });

  it('spreads regions over the image and their areas over the range', () => {
    const rng = new SeededRandom(7);
    const o = checkRandomCrop({});
    const shares: number[] = [];
    let leftHalf = 0;
    for (let draw = 0; draw < 2000; draw++) {
      const r = randomCropRegion(500, 500, rng, o);
      shares.push((r.width * r.height) / 250000);
      if (r.left + r.width / 2 < 250) leftHalf++;
    }
    shares.sort((a, b) => a - b);
    expect(shares[0]!).toBeLessThan(0.1);
    expect(shares[shares.length - 1]!).toBeGreaterThan(0.95);
    expect(leftHalf / 2000).toBeGreaterThan(0.45);
    expect(leftHalf / 2000).toBeLessThan(0.55);
  });

  it("falls back to the centre crop clamped to the ratio range, as torchvision's", () => {
    const rng = new SeededRandom(3);
    // Area 1 at ratio 2 never fits a square: the whole width, height width / 2, centred.
    expect(randomCropRegion(10, 10, rng, checkRandomCrop({ scale: [1, 1], ratio: [2, 2] }))).toEqual({ left: 0, top: 2, width: 10, height: 5 });
    // A wide image at ratio <= 1: the whole height, width = height, centred.
    expect(randomCropRegion(30, 10, rng, checkRandomCrop({ scale: [1, 1], ratio: [0.5, 1] }))).toEqual({ left: 10, top: 0, width: 10, height: 10 });
  });

  it('names bad options', () => {
    expect(() => checkRandomCrop({ scale: [0, 1] })).toThrow(/randomCrop.scale is \[0,1\]: expected \[min, max\] with 0 < min <= max <= 1/);
    expect(() => checkRandomCrop({ scale: [0.5, 0.2] })).toThrow(/randomCrop.scale/);
    expect(() => checkRandomCrop({ scale: [0.5, 1.5] })).toThrow(/randomCrop.scale/);
    expect(() => checkRandomCrop({ ratio: [-1, 2] })).toThrow(/randomCrop.ratio is \[-1,2\]: expected \[min, max\] with 0 < min <= max/);
    expect(() => checkRandomCrop({ ratio: [Number.NaN, 2] })).toThrow(/randomCrop.ratio/);
  });
});

describe('random crops in readImages and training', () => {
  /** width x height RGB: the left half red, the right half blue. */
  function halves(width: number, height: number): Uint8Array {
    const pixels = new Uint8Array(width * height * 3);
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) pixels[(y * width + x) * 3 + (x < width / 2 ? 0 : 2)] = 255;
    return pixels;
  }
  const plain = { mean: [0, 0, 0], std: [1, 1, 1], cropFraction: 1, interpolation: 'bilinear' as const };

  it('cuts the region from the upright image, then resizes it to the model size', async () => {
    const region = { left: 40, top: 0, width: 40, height: 30 }; // the right (blue) half
    const place = () => ({ region, resize: { width: 8, height: 8 } });
    const raw = { pixels: halves(80, 30), width: 80, height: 30, channels: 3 as const };
    const out = (await readImagesNumbered([raw], { size: 8, channels: 3, preprocessing: plain }, 0, () => place)).toFloat32Array();
    expect(out.subarray(0, 64).every((v) => v === 0)).toBe(true); // red plane
    expect(out.subarray(128, 192).every((v) => v === 1)).toBe(true); // blue plane
    // The same picture stored on its side with EXIF orientation 6 (rotate 90 degrees to view): the
    // region still means the upright picture's right half.
    const sideways = await sharp(halves(80, 30), { raw: { width: 80, height: 30, channels: 3 } }).rotate(-90).png().toBuffer();
    const tagged = await sharp(sideways).withMetadata({ orientation: 6 }).jpeg({ quality: 100 }).toBuffer();
    const upright = (await readImagesNumbered([tagged], { size: 8, channels: 3, preprocessing: plain }, 0, () => place)).toFloat32Array();
    expect(Math.max(...upright.subarray(0, 64))).toBeLessThan(0.1);
    expect(Math.min(...upright.subarray(128, 192))).toBeGreaterThan(0.9);
  });

  it("trains on random crops whose draws depend on the run's seed alone", async () => {
    const dir = await writeColourFolder(join(root, 'folder'), { red: 0, blue: 2 }, 6);
    const folder = listImageFolder(dir, { valFraction: 0.34 });
    const run = async (seed: number) => {
      const model = VisionTransformer.create({ ...presets.deitTiny, imageSize: 16, patchSize: 8, width: 32, heads: 2, depth: 1, numClasses: 2, attention: 'softmax', seed: 5 });
      const losses: number[] = [];
      await trainImageFolder({ folder, model, epochs: 2, batchSize: 4, seed, onStep: (s) => losses.push(s.loss) });
      model.dispose();
      return losses;
    };
    const first = await run(11);
    expect(await run(11)).toEqual(first);
    expect(await run(12)).not.toEqual(first);
  }, 60_000);
});
