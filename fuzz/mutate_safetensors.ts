// Mutations that know the safetensors layout: the JSON header is mutated as JSON (names, dtypes,
// shapes, offsets, the metadata and the config inside it) and written back with its length
// prefix, mostly right and sometimes off, so that the reader's later checks get exercised and not
// only its first one.
import { concat } from './mutate_bytes.js';
import { mutateJsonText } from './mutate_json.js';
import type { FuzzRandom } from './random.js';

/** The header text and the data after it, or null when the input is not laid out that way. */
function split(input: Uint8Array): { header: string; data: Uint8Array } | null {
  if (input.length < 8) return null;
  const length = new DataView(input.buffer, input.byteOffset, input.byteLength).getBigUint64(0, true);
  if (length > BigInt(input.length - 8)) return null;
  const end = 8 + Number(length);
  return { header: new TextDecoder().decode(input.subarray(8, end)), data: input.subarray(end) };
}

export function mutateSafetensors(input: Uint8Array, random: FuzzRandom): Uint8Array | null {
  const parts = split(input);
  if (!parts) return null;
  const header = mutateJsonText(parts.header, random);
  if (header === null) return null;
  const bytes = new TextEncoder().encode(header);
  // The format pads the header with spaces to a multiple of 8; a writer may not.
  const padded = random.chance(0.5) ? concat(bytes, new TextEncoder().encode(' '.repeat((8 - (bytes.length % 8)) % 8))) : bytes;
  const prefix = new Uint8Array(8);
  const length = random.chance(0.9) ? padded.length : padded.length + random.pick([-1, 1, -8, 8, parts.data.length]);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(Math.max(0, length)), true);
  return concat(prefix, padded, parts.data);
}
