// A folder of images, one subfolder per class (torchvision's ImageFolder layout): the class
// names are the subfolders' names, sorted, and a class's index is its place in that order.
// With `train/` and `val/` subfolders (ImageNet's layout) those are the split; otherwise the
// last `valFraction` of each class's files (sorted by name) is held out, a fixed rule.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { BadFileError, InvalidArgValueError } from '../errors.js';

/** The file types sharp decodes (readImages). */
export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif', '.svg'];

/** A file name readImages can decode, not hidden (dot files are skipped, as by ImageFolder). */
export function isImageFileName(name: string): boolean {
  return !name.startsWith('.') && IMAGE_EXTENSIONS.includes(extname(name).toLowerCase());
}

export interface ImageList {
  files: string[];
  /** Class index of each file. */
  labels: number[];
}

export interface ImageFolder {
  classes: string[];
  train: ImageList;
  val: ImageList;
}

function subfolders(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
    .map((e) => e.name)
    .sort();
}

function imagesIn(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile() && isImageFileName(e.name))
    .map((e) => e.name)
    .sort()
    .map((name) => join(dir, name));
}

/** Every class folder of `root` with its images; a class without any is an error. */
function classFolders(root: string): Array<{ name: string; files: string[] }> {
  const classes = subfolders(root);
  if (classes.length < 2) throw new BadFileError(`${root}: expected a subfolder per class (at least 2), found ${classes.length === 0 ? 'none' : `only '${classes[0]}'`}`);
  return classes.map((name) => {
    const files = imagesIn(join(root, name));
    if (files.length === 0) throw new BadFileError(`${join(root, name)}: no images (expected files ending in ${IMAGE_EXTENSIONS.join(', ')})`);
    return { name, files };
  });
}

function flatten(folders: Array<{ files: string[] }>): ImageList {
  const list: ImageList = { files: [], labels: [] };
  folders.forEach(({ files }, label) => {
    for (const f of files) {
      list.files.push(f);
      list.labels.push(label);
    }
  });
  return list;
}

export function listImageFolder(root: string, options: { valFraction?: number } = {}): ImageFolder {
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new BadFileError(`${root}: not a folder (expected one subfolder of images per class)`);
  const valFraction = options.valFraction ?? 0.1;
  if (!(valFraction >= 0 && valFraction < 1)) throw new InvalidArgValueError(`valFraction is ${valFraction}, expected a number in [0, 1)`);
  const train = join(root, 'train');
  const val = join(root, 'val');
  if (existsSync(train) && existsSync(val)) {
    const trainClasses = classFolders(train);
    const valClasses = classFolders(val);
    const names = trainClasses.map((c) => c.name);
    if (names.join('\n') !== valClasses.map((c) => c.name).join('\n')) {
      throw new BadFileError(`${root}: train/ and val/ must have the same class folders (train: ${names.join(', ')}; val: ${valClasses.map((c) => c.name).join(', ')})`);
    }
    return { classes: names, train: flatten(trainClasses), val: flatten(valClasses) };
  }
  const folders = classFolders(root);
  const split = folders.map(({ files }) => {
    const held = Math.floor(files.length * valFraction);
    return { train: files.slice(0, files.length - held), val: files.slice(files.length - held) };
  });
  return { classes: folders.map((c) => c.name), train: flatten(split.map((s) => ({ files: s.train }))), val: flatten(split.map((s) => ({ files: s.val }))) };
}
