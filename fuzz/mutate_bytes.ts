// Byte-level mutations of any input: bit flips, interesting values, inserted, deleted and
// duplicated runs, cuts, and splices with another input of the corpus.
import type { FuzzRandom } from './random.js';

/** Values that sit on the edges of lengths, counts and signed ranges. */
const INTERESTING_BYTES = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x20, 0x22, 0x2c, 0x30, 0x39, 0x5b, 0x5d, 0x7b, 0x7d];
const INTERESTING_WORDS = [0, 1, 0x7fffffff, 0x80000000, 0xffffffff, 0xffff, 0x10000, 8, 16, 255, 256];

/** The most bytes a mutation may grow an input to: keeps each run fast. */
export const MAX_INPUT_BYTES = 1 << 20;

type ByteMutation = (input: Uint8Array, random: FuzzRandom, other: Uint8Array) => Uint8Array;

const mutations: ByteMutation[] = [
  function flipBit(input, random) {
    if (input.length === 0) return input;
    const out = input.slice();
    out[random.below(out.length)]! ^= 1 << random.below(8);
    return out;
  },
  function setInterestingByte(input, random) {
    if (input.length === 0) return input;
    const out = input.slice();
    out[random.below(out.length)] = random.pick(INTERESTING_BYTES);
    return out;
  },
  function setRandomByte(input, random) {
    if (input.length === 0) return input;
    const out = input.slice();
    out[random.below(out.length)] = random.below(256);
    return out;
  },
  function setInterestingWord(input, random) {
    if (input.length < 4) return input;
    const out = input.slice();
    new DataView(out.buffer).setUint32(random.below(out.length - 3), random.pick(INTERESTING_WORDS), random.chance(0.5));
    return out;
  },
  function insertBytes(input, random) {
    const at = random.below(input.length + 1);
    const run = Uint8Array.from({ length: 1 + random.below(16) }, () => (random.chance(0.5) ? random.pick(INTERESTING_BYTES) : random.below(256)));
    return concat(input.subarray(0, at), run, input.subarray(at));
  },
  function deleteBytes(input, random) {
    if (input.length === 0) return input;
    const at = random.below(input.length);
    const count = 1 + random.below(Math.min(64, input.length - at));
    return concat(input.subarray(0, at), input.subarray(at + count));
  },
  function duplicateRun(input, random) {
    if (input.length === 0) return input;
    const from = random.below(input.length);
    const run = input.subarray(from, from + 1 + random.below(64));
    const at = random.below(input.length + 1);
    return concat(input.subarray(0, at), run, input.subarray(at));
  },
  function cut(input, random) {
    return input.subarray(0, random.below(input.length + 1)).slice();
  },
  function splice(input, random, other) {
    const a = random.below(input.length + 1);
    const b = random.below(other.length + 1);
    return concat(input.subarray(0, a), other.subarray(b));
  },
];

/** The first four keep the length (and so a file's layout): drawn more often than the rest. */
const weighted = [...mutations.slice(0, 4), ...mutations.slice(0, 4), ...mutations];

export function mutateBytes(input: Uint8Array, random: FuzzRandom, other: Uint8Array): Uint8Array {
  let out = input;
  // A few mutations stacked: one alone rarely gets past a format's first check.
  for (let n = 1 + random.below(3); n > 0; n--) out = random.pick(weighted)(out, random, other);
  return out.length > MAX_INPUT_BYTES ? out.subarray(0, MAX_INPUT_BYTES) : out;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
