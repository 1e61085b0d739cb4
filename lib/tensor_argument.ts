// What a call says when it gets something else where a Tensor goes: plain arrays and typed arrays
// are the usual mistake, and Tensor.fromArray is how they become one.

/** A description of `value` for an error that expected a Tensor, with the way to make one from it. */
export function notATensor(value: unknown, shape?: string): string {
  const fix = `Tensor.fromArray(data, ${shape ?? 'shape'})`;
  if (Array.isArray(value)) return `got a plain array of ${value.length} entries: make it a Tensor with ${fix}`;
  if (ArrayBuffer.isView(value)) return `got a ${(value as object).constructor.name}: make it a Tensor with ${fix}`;
  if (value === null) return 'got null';
  return `got ${typeof value === 'object' ? ((value as object).constructor?.name ?? 'an object') : typeof value}`;
}
