// Coverage guidance from V8's precise block coverage (node:inspector): after each input the
// blocks of the library that ran are collected (taking the coverage resets the counters), and an
// input that reached a block no earlier input did joins the corpus.
import { Session } from 'node:inspector';

/** A block: the script, and the byte range of the source it covers. */
type BlockKey = string;

interface CoverageRange {
  startOffset: number;
  endOffset: number;
  count: number;
}
interface ScriptCoverage {
  url: string;
  functions: Array<{ ranges: CoverageRange[] }>;
}

export class BlockCoverage {
  private readonly session = new Session();
  private readonly reached = new Set<BlockKey>();
  private readonly known = new Set<BlockKey>();

  /** `include` picks the scripts that count: the library's, not Node's or the dependencies'. */
  constructor(private readonly include: (url: string) => boolean) {
    this.session.connect();
    this.post('Profiler.enable');
    this.post('Profiler.startPreciseCoverage', { callCount: true, detailed: true });
  }

  /** The blocks that ran since the last call; true when one of them is new. */
  collect(): boolean {
    const { result } = this.post('Profiler.takePreciseCoverage') as { result: ScriptCoverage[] };
    let fresh = false;
    for (const script of result) {
      if (!this.include(script.url)) continue;
      for (const fn of script.functions) {
        for (const range of fn.ranges) {
          const key = `${script.url}:${range.startOffset}:${range.endOffset}`;
          this.known.add(key);
          if (range.count > 0 && !this.reached.has(key)) {
            this.reached.add(key);
            fresh = true;
          }
        }
      }
    }
    return fresh;
  }

  /** Blocks reached so far, and blocks seen in the functions that ran (the reachable part known). */
  get counts(): { reached: number; known: number } {
    return { reached: this.reached.size, known: this.known.size };
  }

  close(): void {
    this.post('Profiler.stopPreciseCoverage');
    this.session.disconnect();
  }

  // The inspector answers a session of the same thread synchronously.
  private post(method: string, params?: object): unknown {
    let answer: unknown;
    let failure: Error | null = null;
    this.session.post(method, params ?? {}, (error, result) => {
      failure = error;
      answer = result;
    });
    if (failure) throw failure;
    return answer;
  }
}
