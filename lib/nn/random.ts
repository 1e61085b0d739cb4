// A small seeded generator for weight initialisation and drop-path: the same seed gives the same
// model on every machine (Math.random cannot be seeded).

export class SeededRandom {
  private state: number;
  private spare: number | undefined;

  constructor(seed: number) {
    this.state = seed >>> 0 || 0x9e3779b9;
  }

  /** The generator's whole state, to continue the same stream later (a resumed training run). */
  snapshot(): { state: number; spare: number | null } {
    return { state: this.state, spare: this.spare ?? null };
  }

  /** A generator that continues from a snapshot(). */
  static restore(s: { state: number; spare: number | null }): SeededRandom {
    const rng = new SeededRandom(1);
    rng.state = s.state >>> 0;
    rng.spare = s.spare ?? undefined;
    return rng;
  }

  /** Uniform in [0, 1) (mulberry32). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Standard normal (Box-Muller, both values used). */
  normal(): number {
    if (this.spare !== undefined) {
      const s = this.spare;
      this.spare = undefined;
      return s;
    }
    const u = 1 - this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Fisher-Yates shuffle in place: the same seed gives the same order (a training run's batches). */
  shuffle<T>(items: T[]): void {
    for (let i = items.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [items[i], items[j]] = [items[j]!, items[i]!];
    }
  }

  /** Normal(0, std) redrawn outside [-2 std, 2 std], as timm's trunc_normal_(std=...) in effect. */
  truncatedNormal(std: number): number {
    for (;;) {
      const x = this.normal();
      if (Math.abs(x) <= 2) return x * std;
    }
  }
}
