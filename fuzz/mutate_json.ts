// JSON-aware mutations: a value somewhere in a parsed document is replaced by an edge case
// (NaN-like and huge numbers, negative and fractional counts, wrong types, deleted or renamed
// keys), recursing into strings that hold JSON themselves (the config in a model file's metadata).
import type { FuzzRandom } from './random.js';

const NUMBERS = [0, -1, 1, 2, 3, 0.5, -0.5, 1e308, -1e308, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, 1e-320, 7, 8, 16, 28, 4096, 65537];
const STRINGS = ['', 'F32', 'F16', 'BF16', 'F64', 'I64', 'U8', 'softmax', 'castling', 'sparsifiner', 'NaN', 'Infinity', '__proto__', 'constructor', 'x'.repeat(300), '{', '[]', '{}', 'null', '1e999'];

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function edgeValue(random: FuzzRandom, like: Json): Json {
  switch (random.below(6)) {
    case 0:
      return random.pick(NUMBERS);
    case 1:
      return random.pick(STRINGS);
    case 2:
      return random.pick([null, true, false, [], {}] as Json[]);
    case 3:
      // A number nudged: off-by-one shapes and offsets are where readers go wrong.
      return typeof like === 'number' ? like + random.pick([-1, 1, -8, 8, like, -like]) : random.pick(NUMBERS);
    case 4:
      return Array.isArray(like) ? [...like, random.pick(NUMBERS)] : [random.pick(NUMBERS)];
    default:
      return typeof like === 'string' ? like + random.pick(['x', '.weight', '0', '"']) : random.pick(STRINGS);
  }
}

/** Every container and key (or index) in the document, for picking one at random. */
function places(value: Json, out: Array<{ parent: Json[] | { [key: string]: Json }; key: string | number }>): void {
  if (Array.isArray(value)) {
    value.forEach((v, i) => {
      out.push({ parent: value, key: i });
      places(v, out);
    });
  } else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      out.push({ parent: value, key: k });
      places(v, out);
    }
  }
}

/** One mutation of a parsed document, in place; returns the (possibly new) root. */
export function mutateJsonValue(root: Json, random: FuzzRandom, depth = 0): Json {
  const all: Array<{ parent: Json[] | { [key: string]: Json }; key: string | number }> = [];
  places(root, all);
  if (all.length === 0) return edgeValue(random, root);
  const { parent, key } = random.pick(all);
  const current = (parent as Record<string | number, Json>)[key]!;
  // A string that is JSON itself gets a JSON mutation inside it.
  if (typeof current === 'string' && depth < 2 && /^[[{]/.test(current) && random.chance(0.7)) {
    try {
      (parent as Record<string | number, Json>)[key] = JSON.stringify(mutateJsonValue(JSON.parse(current) as Json, random, depth + 1));
      return root;
    } catch {
      // not JSON after all: fall through to a plain replacement
    }
  }
  const choice = random.below(10);
  if (choice === 0 && !Array.isArray(parent)) {
    delete parent[key as string];
  } else if (choice === 1 && !Array.isArray(parent)) {
    parent[(key as string) + random.pick(['x', '_', '.0', ''])] = current;
    delete parent[key as string];
  } else if (choice === 2 && Array.isArray(parent)) {
    parent.splice(key as number, 1);
  } else {
    (parent as Record<string | number, Json>)[key] = edgeValue(random, current);
  }
  return root;
}

/** A JSON text mutated a few times, or unchanged when it is not JSON. */
export function mutateJsonText(text: string, random: FuzzRandom): string | null {
  let value: Json;
  try {
    value = JSON.parse(text) as Json;
  } catch {
    return null;
  }
  for (let n = 1 + random.below(3); n > 0; n--) value = mutateJsonValue(value, random);
  return JSON.stringify(value);
}
