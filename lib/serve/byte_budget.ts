// The bytes that request bodies hold, across all requests a server is reading or answering: each
// upload takes its bytes from one budget before they are read, and a request that does not fit is
// refused instead of read. Without it, the memory a server holds grows with its clients (150
// clients uploading 31 MB each hold 4.5 GB at once).

import { InvalidArgValueError } from '../errors.js';

/** One request's share of the budget: what it holds now; released once, whatever ends it. */
export interface BudgetShare {
  /** Takes `bytes` more; false (and nothing taken) if the budget has not that much left. */
  grow(bytes: number): boolean;
  /** Gives back everything this share holds (a second call gives back nothing). */
  release(): void;
  readonly bytes: number;
}

export class ByteBudget {
  private held = 0;

  constructor(readonly limit: number) {
    if (!(Number.isSafeInteger(limit) && limit >= 1)) throw new InvalidArgValueError(`byte budget: the limit is ${JSON.stringify(limit)}, expected a positive integer (bytes)`);
  }

  /** Bytes held by all shares now. */
  get bytes(): number {
    return this.held;
  }

  /** A new share holding nothing yet. */
  share(): BudgetShare {
    let mine = 0;
    return {
      grow: (bytes: number) => {
        if (this.held + bytes > this.limit) return false;
        this.held += bytes;
        mine += bytes;
        return true;
      },
      release: () => {
        this.held -= mine;
        mine = 0;
      },
      get bytes() {
        return mine;
      },
    };
  }
}
