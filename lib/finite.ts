// Finding NaN and infinite values in float data: a damaged file or a diverged model shows itself
// there first, so loads and inference can name the first such value instead of passing it on.

/** The index of the first NaN or infinity in `values`, or -1 when every value is finite. */
export function firstNonFinite(values: ArrayLike<number>): number {
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    // v - v is 0 for every finite number and NaN for NaN and both infinities.
    if (v - v !== 0) return i;
  }
  return -1;
}

/** 'NaN', 'Infinity' or '-Infinity', as the messages about a non-finite value name it. */
export function nonFiniteName(value: number): string {
  return Number.isNaN(value) ? 'NaN' : value > 0 ? 'Infinity' : '-Infinity';
}
