// The errors castling-vit throws, each with a stable `code` (as Node's own ERR_... codes) that a
// service can branch on: messages are for people and may be reworded, codes are not. An argument
// of the wrong type stays a TypeError and a value out of range a RangeError, so `catch` code that
// tests the standard classes keeps working. docs/errors.md holds the table of codes: what each
// means and what a service should do with it (error_codes.test.ts keeps it and this file equal).
// Errors from the native addon carry the same codes (native/addon/js_error.h) on plain
// TypeError, RangeError and Error objects: branch on `code`, not on these classes.

/** Every code castling-vit's own errors carry. */
export const ErrorCodes = {
  /** An argument or option of the wrong type (a string where a number belongs, an unknown option). */
  INVALID_ARG_TYPE: 'ERR_CASTLING_INVALID_ARG_TYPE',
  /** An argument or option of the right type but a value outside what the call takes (shapes, ranges). */
  INVALID_ARG_VALUE: 'ERR_CASTLING_INVALID_ARG_VALUE',
  /** An input larger than a limit set for it (image pixels, a request body, a model too big to hold). */
  LIMIT_EXCEEDED: 'ERR_CASTLING_LIMIT_EXCEEDED',
  /** A file or folder that is damaged, truncated or not what the call reads (model, checkpoint, image). */
  BAD_FILE: 'ERR_CASTLING_BAD_FILE',
  /** A call the object cannot take in its present state (export before castle(), a castled model's branch). */
  INVALID_STATE: 'ERR_CASTLING_INVALID_STATE',
  /** A model, tensor or optimizer used after dispose(). */
  DISPOSED: 'ERR_CASTLING_DISPOSED',
  /** Refused for now, not for good: a full batcher queue or upload budget, a model with operations in flight. */
  BUSY: 'ERR_CASTLING_BUSY',
  /** Stopped at the caller's request: an AbortSignal, a training loop's shouldStop. */
  ABORTED: 'ERR_CASTLING_ABORTED',
  /** Not available here: a device, CPU path or build this machine lacks, or a feature castling-vit does not have. */
  UNSUPPORTED: 'ERR_CASTLING_UNSUPPORTED',
  /** A native allocation failed (host or device memory). */
  OUT_OF_MEMORY: 'ERR_CASTLING_OUT_OF_MEMORY',
  /** The model produced NaN or infinity where a caller asked for finite outputs. */
  NON_FINITE_OUTPUT: 'ERR_CASTLING_NON_FINITE_OUTPUT',
  /** A fault in castling-vit itself (a broken invariant): worth a bug report. */
  INTERNAL: 'ERR_CASTLING_INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** The code of any thrown value: castling-vit's, the addon's or Node's own (`'ENOENT'`), else undefined. */
export function errorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/** An argument or option of the wrong type. */
export class InvalidArgTypeError extends TypeError {
  readonly code: ErrorCode = ErrorCodes.INVALID_ARG_TYPE;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'TypeError';
  }
}

/** An argument or option with a value the call does not take. */
export class InvalidArgValueError extends RangeError {
  readonly code: ErrorCode = ErrorCodes.INVALID_ARG_VALUE;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RangeError';
  }
}

/** An input over a limit set for it; a RangeError as before the codes. */
export class LimitExceededError extends RangeError {
  readonly code: ErrorCode = ErrorCodes.LIMIT_EXCEEDED;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RangeError';
  }
}

/** A file or folder that is not what the call reads. */
export class BadFileError extends Error {
  readonly code: ErrorCode = ErrorCodes.BAD_FILE;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'BadFileError';
  }
}

/** A call the object cannot take in its present state. */
export class InvalidStateError extends Error {
  readonly code: ErrorCode = ErrorCodes.INVALID_STATE;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'InvalidStateError';
  }
}

/** A model, tensor or optimizer used after dispose(). */
export class DisposedError extends Error {
  readonly code: ErrorCode = ErrorCodes.DISPOSED;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'DisposedError';
  }
}

/** Refused for now: the same call can succeed later. */
export class BusyError extends Error {
  readonly code: ErrorCode = ErrorCodes.BUSY;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'BusyError';
  }
}

/**
 * Work stopped at the caller's request. Named 'AbortError' as fetch's and Node's are; an
 * AbortSignal's own reason is its `cause`.
 */
export class AbortedError extends Error {
  readonly code: ErrorCode = ErrorCodes.ABORTED;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'AbortError';
  }
}

/** Not available on this machine or in this build, or not a feature castling-vit has. */
export class UnsupportedError extends Error {
  readonly code: ErrorCode = ErrorCodes.UNSUPPORTED;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'UnsupportedError';
  }
}

/** The model produced a non-finite value where finite outputs were asked for. */
export class NonFiniteOutputError extends Error {
  readonly code: ErrorCode = ErrorCodes.NON_FINITE_OUTPUT;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'NonFiniteOutputError';
  }
}

/** A fault in castling-vit itself. */
export class InternalError extends Error {
  readonly code: ErrorCode = ErrorCodes.INTERNAL;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'InternalError';
  }
}
