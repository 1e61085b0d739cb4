import { InvalidArgTypeError, InvalidArgValueError } from '../errors.js';
// How a model's images are prepared: the per-channel normalisation, crop and resampling it was
// trained with. Part of the model (saved with it, checked by it); io/images.ts applies it to files.

/** How a model's images were prepared in training, so that files reach it the same way. */
export interface ImagePreprocessing {
  /** Per-channel mean of the [0, 1] pixel values, subtracted (one entry per input channel). */
  mean: readonly number[];
  /** Per-channel standard deviation, divided by (positive). */
  std: readonly number[];
  /**
   * timm's crop_pct: the shorter side is resized to floor(size / cropFraction), then the centre
   * size x size square is kept. 1 keeps the whole shorter side.
   */
  cropFraction: number;
  /** The resampling filter of the resize (bicubic is timm's default for DeiT). */
  interpolation: 'bicubic' | 'bilinear' | 'nearest';
}

/** timm's defaults for ImageNet models (IMAGENET_DEFAULT_MEAN / STD, crop_pct 0.875, bicubic). */
export const imagenetPreprocessing: Readonly<ImagePreprocessing> = Object.freeze({
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
  cropFraction: 0.875,
  interpolation: 'bicubic',
});

/** The resampling filters, by their names here and sharp's (io/images.ts resizes with them). */
export const INTERPOLATIONS = { bicubic: 'cubic', bilinear: 'linear', nearest: 'nearest' } as const;

/** The default for a model with `channels` inputs: ImageNet's for RGB, none (mean 0, std 1) otherwise. */
export function defaultPreprocessing(channels: number): ImagePreprocessing {
  if (channels === 3) return { ...imagenetPreprocessing, mean: [...imagenetPreprocessing.mean], std: [...imagenetPreprocessing.std] };
  return { mean: new Array<number>(channels).fill(0), std: new Array<number>(channels).fill(1), cropFraction: 1, interpolation: 'bilinear' };
}

/** A deeply frozen copy: a model hands out its preprocessing without letting it be changed in place. */
export function freezePreprocessing(p: ImagePreprocessing): Readonly<ImagePreprocessing> {
  return Object.freeze({ ...p, mean: Object.freeze([...p.mean]), std: Object.freeze([...p.std]) });
}

/** Validates `p` for a model with `channels` inputs; returns a copy. `what` names it in errors. */
export function checkPreprocessing(p: unknown, channels: number, what = 'preprocessing'): ImagePreprocessing {
  if (typeof p !== 'object' || p === null) throw new InvalidArgTypeError(`${what} must be an object { mean, std, cropFraction, interpolation }`);
  const { mean, std, cropFraction, interpolation } = p as Record<string, unknown>;
  const perChannel = (v: unknown, field: string, positive: boolean): number[] => {
    const ok = Array.isArray(v) && v.length === channels && v.every((x) => typeof x === 'number' && Number.isFinite(x) && (!positive || x > 0));
    if (!ok) {
      throw new InvalidArgValueError(`${what}.${field} is ${JSON.stringify(v)}: expected ${channels} finite ${positive ? 'positive ' : ''}number(s), one per input channel`);
    }
    return [...(v as number[])];
  };
  if (!(typeof cropFraction === 'number' && cropFraction > 0 && cropFraction <= 1)) {
    throw new InvalidArgValueError(`${what}.cropFraction is ${JSON.stringify(cropFraction)}: expected a number in (0, 1]`);
  }
  if (typeof interpolation !== 'string' || !(interpolation in INTERPOLATIONS)) {
    throw new InvalidArgTypeError(`${what}.interpolation is ${JSON.stringify(interpolation)}: expected 'bicubic', 'bilinear' or 'nearest'`);
  }
  return { mean: perChannel(mean, 'mean', false), std: perChannel(std, 'std', true), cropFraction, interpolation: interpolation as ImagePreprocessing['interpolation'] };
}
