// The property every target checks: an input either works or is refused with an Error whose
// message says what was wrong (naming the file where there is one). Anything else is a finding:
// a throw of a non-Error, an error from deep inside (reading a property of undefined, a typed
// array of a bad length), or a message that does not name the file.

/** A broken property: the harness saves the input that did it. */
export class Finding extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Finding';
  }
}

/** Messages of errors that no check of ours wrote: JavaScript's own, from code that went wrong. */
const INTERNAL_ERROR = new RegExp(
  [
    'Cannot read propert',
    'Cannot set propert',
    'Cannot convert',
    'is not a function',
    'is not iterable',
    'is not a constructor',
    'undefined is not',
    'null is not',
    'Invalid typed array length',
    'Invalid array length',
    'Maximum call stack',
    'Array buffer allocation failed',
    'Offset is outside the bounds',
    'out of range\\. It must be',
    'Start offset',
  ].join('|'),
);

/** Throws a Finding unless `error` is a refusal that says what was wrong (and names `name`). */
export function expectRefusal(error: unknown, name?: string): void {
  if (error instanceof Finding) throw error;
  if (!(error instanceof Error)) throw new Finding(`threw a non-Error: ${String(error)}`);
  if (INTERNAL_ERROR.test(error.message)) throw new Finding(`an error from inside, not a refusal: ${error.name}: ${error.message}`);
  if (name !== undefined && !error.message.includes(name)) throw new Finding(`the error does not name '${name}': ${error.message}`);
}

/** Throws a Finding when `values` holds NaN or an infinity that was not reported. */
export function expectFinite(values: Float32Array, what: string): void {
  for (const v of values) if (!Number.isFinite(v)) throw new Finding(`${what} holds ${v} and no error said so`);
}
