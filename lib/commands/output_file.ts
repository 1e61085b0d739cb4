// The files a training command writes: never a model that is there already, unless --force says
// so (a default output name, or a resumed run without its --out, would otherwise replace a model
// trained before, hours of work, without a word). A training checkpoint keeps the run's output
// name, so that --resume saves where the run was meant to.
import { existsSync } from 'node:fs';
import { InvalidArgValueError } from '../errors.js';

/** The metadata key of a checkpoint that holds its run's output file. */
export const OUTPUT_KEY = 'trainOutput';

/** Throws when `path` exists and `force` is not set, saying what chose the path. */
export function refuseToReplace(path: string, force: boolean | undefined, chosenBy: string): void {
  if (force || !existsSync(path)) return;
  throw new InvalidArgValueError(`${path} exists already (${chosenBy}): training would replace it; give another --out, or --force to replace it`);
}

/** The output a checkpoint's run was given, from its metadata (absent in older checkpoints). */
export function outputOfCheckpoint(metadata: Record<string, string>): string | undefined {
  const out = metadata[OUTPUT_KEY];
  return typeof out === 'string' && out !== '' ? out : undefined;
}
