// The fuzzer's seeded choices: the library's generator (a run is replayed exactly from its seed)
// with the few helpers mutations need.
import { SeededRandom } from '../lib/nn/random.js';

export class FuzzRandom extends SeededRandom {
  /** An integer in [0, n). */
  below(n: number): number {
    return Math.floor(this.next() * n);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }

  chance(p: number): boolean {
    return this.next() < p;
  }
}
