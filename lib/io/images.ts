// Image files (and raw pixels) into model inputs: decoded by sharp (libvips: JPEG, PNG, WebP,
// GIF, TIFF, AVIF, SVG), turned upright by their EXIF orientation, resized and centre-cropped
// the way timm evaluates (shorter side to floor(size / cropFraction), then the centre size x size),
// and normalised per channel: (pixel / 255 - mean) / std, channel-first.
import { stat } from 'node:fs/promises';

import { Tensor } from '../tensor.js';
import { INTERPOLATIONS, checkPreprocessing, defaultPreprocessing, type ImagePreprocessing } from '../nn/preprocessing.js';
import { BadFileError, InvalidArgTypeError, InvalidArgValueError, LimitExceededError } from '../errors.js';

export { imagenetPreprocessing, defaultPreprocessing, freezePreprocessing, checkPreprocessing, type ImagePreprocessing } from '../nn/preprocessing.js';

/** Decoded pixels, row-major, channels interleaved (RGB, RGBA, grey or grey + alpha). */
export interface RawImage {
  pixels: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
}

/** A path to an image file, the encoded bytes of one (a Buffer is a Uint8Array), or raw pixels. */
export type ImageSource = string | Uint8Array | RawImage;

export interface ReadImagesOptions {
  /** Output images are size x size. */
  size: number;
  /** 1 (grey) or 3 (RGB, the default): colour images are made grey, grey ones repeated, alpha dropped. */
  channels?: number;
  /** Default: defaultPreprocessing(channels) (ImageNet's for RGB). A model's own: model.readImages. */
  preprocessing?: ImagePreprocessing;
  /**
   * The most pixels (width x height) an encoded image may have; larger ones are refused from
   * their header, before any decoding, with an ImagePixelLimitError. Default: libvips' own limit,
   * 16383 x 16383.
   */
  maxInputPixels?: number;
}

/** libvips' default pixel limit (sharp's limitInputPixels): 16383 x 16383. */
export const DEFAULT_MAX_INPUT_PIXELS = 16383 * 16383;

/**
 * An image refused because its header declares more pixels than options.maxInputPixels: a small
 * file can declare a huge image (a PNG of one colour), whose decoding would cost seconds of CPU
 * and its full size in memory.
 */
export class ImagePixelLimitError extends LimitExceededError {
  constructor(
    message: string,
    readonly pixels: number,
    readonly maxInputPixels: number,
  ) {
    super(message);
    this.name = 'ImagePixelLimitError';
  }
}


function describe(source: ImageSource, index: number): string {
  return typeof source === 'string' ? `'${source}'` : `image ${index} (${source instanceof Uint8Array ? `${source.length} encoded bytes` : 'raw pixels'})`;
}

/** sharp is loaded on first use: importing castling-vit does not load libvips. */
type Sharp = (typeof import('sharp'))['default'];
let sharpModule: Promise<Sharp> | null = null;
function loadSharp(): Promise<Sharp> {
  sharpModule ??= import('sharp').then((m) => m.default);
  return sharpModule;
}

function rawInput(source: RawImage): { raw: { width: number; height: number; channels: 1 | 2 | 3 | 4 } } {
  const { pixels, width, height, channels } = source;
  const dims = [width, height].every((v) => Number.isInteger(v) && v >= 1 && v <= 1 << 16);
  if (!(pixels instanceof Uint8Array) || !dims || ![1, 2, 3, 4].includes(channels)) {
    throw new InvalidArgTypeError('raw pixels need { pixels: Uint8Array, width, height (1 to 65536), channels: 1 to 4 }');
  }
  if (pixels.length !== width * height * channels) {
    throw new InvalidArgValueError(`raw pixels hold ${pixels.length} bytes, expected width ${width} x height ${height} x channels ${channels} = ${width * height * channels}`);
  }
  return { raw: { width, height, channels } };
}

/** Python's round(): halves go to the even neighbour (torchvision's crops use it). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * torchvision's Resize(int) then CenterCrop, as timm evaluates: the shorter side resized to
 * floor(size / cropFraction), the longer one in proportion (truncated), and the crop's corner.
 */
export function resizeAndCrop(width: number, height: number, size: number, cropFraction: number): { width: number; height: number; left: number; top: number } {
  // The small epsilon keeps size / 0.875 = 256 from landing at 255.99999.
  const shorter = Math.floor(size / cropFraction + 1e-9);
  const scale = (long: number, short: number) => Math.max(shorter, Math.floor((shorter * long) / short));
  const w = width <= height ? shorter : scale(width, height);
  const h = width <= height ? scale(height, width) : shorter;
  return { width: w, height: h, left: roundHalfEven((w - size) / 2), top: roundHalfEven((h - size) / 2) };
}

/**
 * Where an image's output pixels come from, in its upright pixels: an optional region cut first,
 * the resize, and an optional size x size window cut from the resized image.
 */
export interface ImagePlacement {
  region?: { left: number; top: number; width: number; height: number };
  resize: { width: number; height: number };
  window?: { left: number; top: number };
}

/** Chooses the placement of an image of the given upright width and height. */
export type PlaceImage = (width: number, height: number) => ImagePlacement;

/** The evaluation placement: resizeAndCrop's. */
function centreCrop(size: number, cropFraction: number): PlaceImage {
  return (width, height) => {
    const g = resizeAndCrop(width, height, size, cropFraction);
    return { resize: { width: g.width, height: g.height }, window: { left: g.left, top: g.top } };
  };
}

/** Decodes one image into size x size x channels bytes. */
async function decodeOne(sharp: Sharp, source: ImageSource, index: number, size: number, channels: number, p: ImagePreprocessing, place: PlaceImage, maxInputPixels: number): Promise<Uint8Array> {
  try {
    // sharp tells a missing file from an undecodable one by libvips' last error message, a buffer
    // the threads decoding at once share: another image's decode can make a missing file read as
    // "unsupported image format". Asked here first, a missing file is always named as such.
    if (typeof source === 'string') {
      await stat(source).catch((error: NodeJS.ErrnoException) => {
        throw error.code === 'ENOENT' ? new BadFileError('Input file is missing') : error;
      });
    }
    const encoded = typeof source === 'string' || source instanceof Uint8Array;
    const input = encoded ? source : source.pixels;
    const options = encoded ? {} : rawInput(source);
    // The header alone, read without libvips' limit (whose error names no sizes): a huge image is
    // refused here, before it costs any decoding. autoOrient: the dimensions are the upright image's.
    const meta = await sharp(input, { ...options, autoOrient: true, limitInputPixels: false }).metadata();
    const pixels = meta.width * meta.height;
    if (pixels > maxInputPixels) {
      throw new ImagePixelLimitError(`the image is ${meta.width} x ${meta.height} = ${pixels} pixels, more than the pixel limit of ${maxInputPixels} (maxInputPixels)`, pixels, maxInputPixels);
    }
    // libvips checks the same limit again while decoding, for what a header may not tell.
    const image = sharp(input, { ...options, autoOrient: true, limitInputPixels: maxInputPixels });
    const upright = meta.autoOrient ?? { width: meta.width, height: meta.height };
    const { region, resize, window } = place(upright.width, upright.height);
    image.removeAlpha();
    if (region) image.extract(region); // before the resize: sharp cuts it from the upright pixels
    image.resize({ ...resize, fit: 'fill', kernel: INTERPOLATIONS[p.interpolation] });
    if (window) image.extract({ ...window, width: size, height: size });
    if (channels === 1) image.grayscale();
    else image.toColourspace('srgb');
    const { data, info } = await image.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== channels || info.width !== size || info.height !== size) {
      throw new BadFileError(`decoded to ${info.width} x ${info.height} x ${info.channels}, expected ${size} x ${size} x ${channels}`);
    }
    return data;
  } catch (error) {
    const message = `readImages: could not read ${describe(source, index)}: ${error instanceof Error ? error.message : String(error)}`;
    // Kept apart from undecodable files: a server answers it 413, not 400.
    if (error instanceof ImagePixelLimitError) throw new ImagePixelLimitError(message, error.pixels, error.maxInputPixels);
    throw new BadFileError(message);
  }
}

/**
 * Reads images into one Tensor [images, channels, size, size], ready for `model.predict`.
 * Decoding runs on libuv's threads, all images at once.
 */
export function readImages(sources: readonly ImageSource[], options: ReadImagesOptions): Promise<Tensor> {
  return readImagesNumbered(sources, options, 0);
}

/**
 * readImages for a slice of a longer list that starts at `firstIndex` (classify's chunks), so that
 * an error names the image by its place in the caller's list; `placeFor` gives image i (of
 * `sources`) another placement than the evaluation's centre crop (training's random crops).
 */
export async function readImagesNumbered(sources: readonly ImageSource[], options: ReadImagesOptions, firstIndex: number, placeFor?: (image: number) => PlaceImage): Promise<Tensor> {
  if (!Array.isArray(sources) || sources.length === 0) throw new InvalidArgTypeError('readImages: expected a non-empty array of image paths, encoded bytes or raw pixels');
  if (typeof options !== 'object' || options === null) throw new InvalidArgTypeError('readImages: expected options { size, channels?, preprocessing? }');
  const { size, channels = 3 } = options;
  if (!(Number.isInteger(size) && size >= 1 && size <= 8192)) throw new InvalidArgValueError(`readImages: size is ${size}, expected an integer from 1 to 8192`);
  if (channels !== 1 && channels !== 3) throw new InvalidArgValueError(`readImages: channels is ${channels}, expected 1 (grey) or 3 (RGB)`);
  const maxInputPixels = options.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS;
  if (!(Number.isInteger(maxInputPixels) && maxInputPixels >= 1)) throw new InvalidArgValueError(`readImages: maxInputPixels is ${JSON.stringify(options.maxInputPixels)}, expected a positive integer`);
  const p = checkPreprocessing(options.preprocessing ?? defaultPreprocessing(channels), channels, 'readImages: preprocessing');
  sources.forEach((s, i) => {
    if (!(typeof s === 'string' || s instanceof Uint8Array || (typeof s === 'object' && s !== null && 'pixels' in s))) {
      throw new InvalidArgTypeError(`readImages: image ${firstIndex + i} is ${s === null ? 'null' : typeof s}, expected a path, encoded bytes or { pixels, width, height, channels }`);
    }
  });
  const sharp = await loadSharp();
  const centre = centreCrop(size, p.cropFraction);
  const decoded = await Promise.all(sources.map((s, i) => decodeOne(sharp, s, firstIndex + i, size, channels, p, placeFor?.(i) ?? centre, maxInputPixels)));
  const plane = size * size;
  const out = new Float32Array(sources.length * channels * plane);
  // Interleaved bytes to normalised channel planes through one table per channel:
  // out[c][y][x] = (byte / 255 - mean[c]) / std[c], rounded once from float64.
  const tables = Array.from({ length: channels }, (_, c) => Float32Array.from({ length: 256 }, (_, v) => (v / 255 - p.mean[c]!) / p.std[c]!));
  decoded.forEach((bytes, image) => {
    for (let c = 0; c < channels; c++) {
      const table = tables[c]!;
      const base = (image * channels + c) * plane;
      for (let i = 0; i < plane; i++) out[base + i] = table[bytes[i * channels + c]!]!;
    }
  });
  return Tensor.fromArray(out, [sources.length, channels, size, size]);
}
