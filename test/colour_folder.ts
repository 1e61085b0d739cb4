// Folders of small noisy pictures whose class is their dominant colour channel, for the tests of
// training on image folders: PNGs of odd sizes, one subfolder per class.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import sharp from 'sharp';

import { random } from './helpers.js';

/** dir/<class>/<i>.png for each class (name: the RGB channel that is bright), `perClass` images each. */
export async function writeColourFolder(dir: string, classes: Record<string, 0 | 1 | 2>, perClass: number): Promise<string> {
  for (const [name, channel] of Object.entries(classes)) {
    mkdirSync(join(dir, name), { recursive: true });
    for (let i = 0; i < perClass; i++) {
      const width = 20 + Math.floor(random() * 30), height = 20 + Math.floor(random() * 30);
      const pixels = new Uint8Array(width * height * 3).map((_, j) => (j % 3 === channel ? 128 + random() * 127 : random() * 200));
      await sharp(pixels, { raw: { width, height, channels: 3 } }).png().toFile(join(dir, name, `${i}.png`));
    }
  }
  return dir;
}
