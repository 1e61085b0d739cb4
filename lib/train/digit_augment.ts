// The random changes a training digit goes through before a step: a shift, a rotation, a change
// of size and an elastic bending (one map from output to source pixels, sampled bilinearly), and
// random erasing of a rectangle. Each image draws its own from the run's seeded generator, so the
// same seed trains the same model.
import { DIGIT_SIZE, digitsPreprocessing, type DigitSet } from '../data/digits.js';
import type { SeededRandom } from '../nn/random.js';
import { InvalidArgTypeError, InvalidArgValueError } from '../errors.js';

export interface DigitAugmentation {
  /** Largest shift in pixels along each axis (0: none). */
  shift: number;
  /** Shifts by any fraction of a pixel (bilinear) instead of whole pixels only. */
  subpixel: boolean;
  /** Largest rotation in degrees (0: none). */
  rotate: number;
  /** Largest change of size, as a fraction (0.1: 90% to 110%; 0: none). */
  scale: number;
  /** Chance that an image has a rectangle of it erased to the background (0: never). */
  erase: number;
  /**
   * Largest displacement, in pixels, of the points of a coarse grid that bend the image smoothly
   * (an elastic distortion: strokes thicken, thin and curve as handwriting varies; 0: none).
   */
  elastic: number;
}

/** Points per side of the elastic distortion's grid: 4 bends a digit at about the scale of its strokes' turns. */
const ELASTIC_GRID = 4;

/** Checks each field (errors name it and the range expected); returns the augmentation. */
export function checkDigitAugmentation(aug: DigitAugmentation): DigitAugmentation {
  const ranges: Array<[keyof DigitAugmentation, number, string]> = [
    ['shift', DIGIT_SIZE, 'pixels'],
    ['rotate', 180, 'degrees'],
    ['scale', 0.5, 'a fraction of the size'],
    ['erase', 1, 'a probability'],
    ['elastic', 8, 'pixels'],
  ];
  for (const [field, max, unit] of ranges) {
    const v = aug[field];
    if (typeof v !== 'number' || !(v >= 0 && v <= max)) throw new InvalidArgValueError(`trainDigits: ${field} is ${JSON.stringify(v)}, expected a number from 0 to ${max} (${unit})`);
  }
  if (typeof aug.subpixel !== 'boolean') throw new InvalidArgTypeError(`trainDigits: subpixel is ${JSON.stringify(aug.subpixel)}, expected true or false`);
  return aug;
}

const MEAN = digitsPreprocessing.mean[0]!;
const STD = digitsPreprocessing.std[0]!;

/** A grey value in [0, 1] as the model reads it. */
export function normaliseDigitPixel(v: number): number {
  return (v - MEAN) / STD;
}

/** Copies image `index` into `out` shifted by whole pixels (dx, dy), filling with the background. */
function shifted(set: DigitSet, index: number, dx: number, dy: number, out: Float32Array, offset: number): void {
  const n = DIGIT_SIZE;
  const background = normaliseDigitPixel(0);
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      const sx = x - dx;
      const sy = y - dy;
      out[offset + y * n + x] = sx >= 0 && sx < n && sy >= 0 && sy < n ? normaliseDigitPixel(set.images[index * n * n + sy * n + sx]!) : background;
    }
  }
}

/**
 * Copies image `index` into `out` rotated by `angle` radians and scaled by `zoom` about the
 * centre, shifted by (dx, dy) pixels and bent by `bend` (drawBend's, or null): each output pixel
 * samples the source bilinearly (background outside), so small changes do not lose strokes.
 */
function warped(set: DigitSet, index: number, angle: number, zoom: number, dx: number, dy: number, bend: Float64Array | null, out: Float32Array, offset: number): void {
  const n = DIGIT_SIZE;
  const centre = (n - 1) / 2;
  const images = set.images;
  const start = index * n * n;
  // Reads near the border check their bounds; the rest (most of the image) read directly.
  const pixel = (x: number, y: number) => (x >= 0 && x < n && y >= 0 && y < n ? images[start + y * n + x]! : 0);
  // The inverse map: from an output pixel back to where it comes from in the source.
  const cos = Math.cos(angle) / zoom;
  const sin = Math.sin(angle) / zoom;
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      const u = x - dx - centre;
      const v = y - dy - centre;
      let sx = cos * u + sin * v + centre;
      let sy = -sin * u + cos * v + centre;
      if (bend) {
        sx += bend[(y * n + x) * 2]!;
        sy += bend[(y * n + x) * 2 + 1]!;
      }
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      const fx = sx - x0;
      const fy = sy - y0;
      let value: number;
      if (x0 >= 0 && y0 >= 0 && x0 < n - 1 && y0 < n - 1) {
        const at = start + y0 * n + x0;
        value = (1 - fy) * ((1 - fx) * images[at]! + fx * images[at + 1]!) + fy * ((1 - fx) * images[at + n]! + fx * images[at + n + 1]!);
      } else if (x0 < -1 || y0 < -1 || x0 >= n || y0 >= n) {
        value = 0;
      } else {
        value = (1 - fy) * ((1 - fx) * pixel(x0, y0) + fx * pixel(x0 + 1, y0)) + fy * ((1 - fx) * pixel(x0, y0 + 1) + fx * pixel(x0 + 1, y0 + 1));
      }
      out[offset + y * n + x] = normaliseDigitPixel(value);
    }
  }
}

/** Per pixel coordinate: the grid cell it falls in and how far across it (the grid spans the image). */
const GRID_CELL = Array.from({ length: DIGIT_SIZE }, (_, t) => {
  const g = Math.min((t * (ELASTIC_GRID - 1)) / (DIGIT_SIZE - 1), ELASTIC_GRID - 1 - 1e-9);
  return { cell: Math.floor(g), across: g - Math.floor(g) };
});

/** drawBend's grid and field, reused from image to image (the training loop draws one at a time). */
const bendGrid = new Float64Array(ELASTIC_GRID * ELASTIC_GRID * 2);
const bendField = new Float64Array(DIGIT_SIZE * DIGIT_SIZE * 2);

/**
 * A smooth random displacement per pixel (x then y): a grid of displacements within +-limit
 * pixels, interpolated bilinearly between its points. Valid until the next call.
 */
function drawBend(rng: SeededRandom, limit: number): Float64Array {
  const grid = bendGrid;
  for (let i = 0; i < grid.length; i++) grid[i] = (rng.next() * 2 - 1) * limit;
  const n = DIGIT_SIZE;
  const g = ELASTIC_GRID;
  for (let y = 0; y < n; y++) {
    const { cell: j, across: fy } = GRID_CELL[y]!;
    for (let x = 0; x < n; x++) {
      const { cell: i, across: fx } = GRID_CELL[x]!;
      for (let axis = 0; axis < 2; axis++) {
        const top = (1 - fx) * grid[(j * g + i) * 2 + axis]! + fx * grid[(j * g + i + 1) * 2 + axis]!;
        const bottom = (1 - fx) * grid[((j + 1) * g + i) * 2 + axis]! + fx * grid[((j + 1) * g + i + 1) * 2 + axis]!;
        bendField[(y * n + x) * 2 + axis] = (1 - fy) * top + fy * bottom;
      }
    }
  }
  return bendField;
}

/**
 * Erases a random rectangle of 1/16 to 1/4 of the image (random erasing), to the background: the
 * model then cannot lean on any one part of a digit.
 */
function erased(rng: SeededRandom, out: Float32Array, offset: number): void {
  const n = DIGIT_SIZE;
  const area = (n * n * (1 + 3 * rng.next())) / 16;
  const aspect = Math.exp((rng.next() * 2 - 1) * Math.log(2)); // 1:2 to 2:1
  const h = Math.min(n, Math.max(1, Math.round(Math.sqrt(area * aspect))));
  const w = Math.min(n, Math.max(1, Math.round(Math.sqrt(area / aspect))));
  const top = Math.floor(rng.next() * (n - h + 1));
  const left = Math.floor(rng.next() * (n - w + 1));
  const background = normaliseDigitPixel(0);
  for (let y = top; y < top + h; y++) out.fill(background, offset + y * n + left, offset + y * n + left + w);
}

/** Writes training image `index`, randomly changed by `aug`, normalised, into `out` at `offset`. */
export function augmentDigit(set: DigitSet, index: number, aug: DigitAugmentation, rng: SeededRandom, out: Float32Array, offset: number): void {
  const draw = (limit: number) => (rng.next() * 2 - 1) * limit;
  const dx = aug.subpixel ? draw(aug.shift) : Math.round(draw(aug.shift));
  const dy = aug.subpixel ? draw(aug.shift) : Math.round(draw(aug.shift));
  if (aug.subpixel || aug.rotate > 0 || aug.scale > 0 || aug.elastic > 0) {
    const angle = (draw(aug.rotate) * Math.PI) / 180;
    const zoom = 1 + draw(aug.scale);
    const bend = aug.elastic > 0 ? drawBend(rng, aug.elastic) : null;
    warped(set, index, angle, zoom, dx, dy, bend, out, offset);
  } else {
    shifted(set, index, dx, dy, out, offset);
  }
  if (aug.erase > 0 && rng.next() < aug.erase) erased(rng, out, offset);
}
