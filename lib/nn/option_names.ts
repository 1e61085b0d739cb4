// Options objects are checked for names they do not know: a misspelt option (topk for top) would
// otherwise be ignored without a word and the call would run with the default.

import { InvalidArgTypeError } from '../errors.js';

/** Throws a TypeError naming the first unknown key of `options` and the keys that are known. */
export function checkOptionNames(options: object | undefined, known: readonly string[], what: string): void {
  if (options === undefined || options === null) return;
  if (typeof options !== 'object') throw new InvalidArgTypeError(`${what}: options must be an object, got ${typeof options}`);
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue;
    const near = known.find((k) => k.toLowerCase().startsWith(key.toLowerCase().slice(0, 3)) || key.toLowerCase().startsWith(k.toLowerCase()));
    throw new InvalidArgTypeError(`${what}: '${key}' is not an option${near ? ` (did you mean '${near}'?)` : ''}; expected ${known.map((k) => `'${k}'`).join(', ')}`);
  }
}
