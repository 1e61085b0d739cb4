// Training's random-resized crop, torchvision's RandomResizedCrop (timm's default training
// transform): a region of random area (a share of the image drawn from `scale`) and random aspect
// ratio (log-uniform in `ratio`), at a random place, resized to the model's image size. After ten
// draws that do not fit, the centre crop clamped to the ratio range, as torchvision falls back.
import { roundHalfEven, type PlaceImage } from '../io/images.js';
import { SeededRandom } from '../nn/random.js';
import { InvalidArgValueError } from '../errors.js';

export interface RandomCropOptions {
  /** Range of the region's area as a share of the image's (default [0.08, 1]). */
  scale?: readonly [number, number];
  /** Range of the region's width / height, drawn log-uniformly (default [3/4, 4/3]). */
  ratio?: readonly [number, number];
}

export interface CropRegion {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** Checks the options (errors name the field); returns them with the defaults filled in. */
export function checkRandomCrop(o: RandomCropOptions): Required<RandomCropOptions> {
  const scale = o.scale ?? [0.08, 1];
  const ratio = o.ratio ?? [3 / 4, 4 / 3];
  const range = (v: readonly number[]) => Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'number' && Number.isFinite(x)) && v[0]! <= v[1]!;
  if (!range(scale) || !(scale[0] > 0 && scale[1] <= 1)) {
    throw new InvalidArgValueError(`randomCrop.scale is ${JSON.stringify(scale)}: expected [min, max] with 0 < min <= max <= 1 (shares of the image's area)`);
  }
  if (!range(ratio) || !(ratio[0] > 0)) {
    throw new InvalidArgValueError(`randomCrop.ratio is ${JSON.stringify(ratio)}: expected [min, max] with 0 < min <= max (width / height)`);
  }
  return { scale, ratio };
}

/** A region of a width x height image, drawn as torchvision's RandomResizedCrop.get_params. */
export function randomCropRegion(width: number, height: number, rng: SeededRandom, o: Required<RandomCropOptions>): CropRegion {
  const area = width * height;
  const [logLow, logHigh] = [Math.log(o.ratio[0]), Math.log(o.ratio[1])];
  const uniform = (low: number, high: number) => low + (high - low) * rng.next();
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * uniform(o.scale[0], o.scale[1]);
    const aspect = Math.exp(uniform(logLow, logHigh));
    const w = roundHalfEven(Math.sqrt(target * aspect));
    const h = roundHalfEven(Math.sqrt(target / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const top = Math.floor(rng.next() * (height - h + 1));
      const left = Math.floor(rng.next() * (width - w + 1));
      return { left, top, width: w, height: h };
    }
  }
  // The fallback: the whole image, cut to the nearest end of the ratio range, centred.
  let w = width, h = height;
  if (width / height < o.ratio[0]) h = Math.max(1, roundHalfEven(w / o.ratio[0]));
  else if (width / height > o.ratio[1]) w = Math.max(1, roundHalfEven(h * o.ratio[1]));
  return { left: Math.floor((width - w) / 2), top: Math.floor((height - h) / 2), width: w, height: h };
}

/**
 * A placement for readImages: a random region, resized to size x size. Each image draws from its
 * own generator, seeded from `rng` before decoding starts, so a run's crops do not depend on the
 * order in which decoding finishes.
 */
export function randomCropPlacement(size: number, rng: SeededRandom, o: Required<RandomCropOptions>): PlaceImage {
  const own = new SeededRandom(Math.floor(rng.next() * 2 ** 32));
  return (width, height) => ({ region: randomCropRegion(width, height, own, o), resize: { width: size, height: size } });
}
