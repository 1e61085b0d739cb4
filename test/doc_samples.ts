// Finds the code samples of a Markdown guide, for test/doc_samples.test.ts to run.
//
// The conventions a guide's author follows (docs/README.md says the same for writers):
// * ```ts, ```js and ```sh blocks are samples and run, in the order they appear, in one scratch
//   folder per guide (so a later sample may read the file an earlier one wrote);
// * an HTML comment on the line right before a block changes how it runs:
//   `<!-- not run: why -->` skips it (keep these few and the reason true);
//   `<!-- tiny: --epochs 1 --limit 256 -->` before a sh block adds those options to each
//   `npx castling-vit` command in it; `<!-- tiny: steps=2 batch=8 -->` before a ts or js block
//   replaces the value of each `const steps = ...;` it names, so that the sample as printed
//   keeps realistic sizes while the test runs small ones;
// * any other language (```text, ```json, ...) is an illustration, not a sample.

export type SampleLanguage = 'ts' | 'js' | 'sh';

export interface Sample {
  /** The guide's path as given, and the 1-based line of the opening fence. */
  file: string;
  line: number;
  language: SampleLanguage;
  code: string;
  /** Why the sample is not run, when a `not run` comment says so. */
  notRun?: string;
  /** The `tiny` comment's text, when there is one. */
  tiny?: string;
}

const RUNNABLE = new Set<string>(['ts', 'js', 'sh']);
const FENCE = /^```(\S*)\s*$/;
const DIRECTIVE = /^<!--\s*(not run|tiny):\s*(.*?)\s*-->\s*$/;

/** The runnable samples of one Markdown text, with their directives. */
export function extractSamples(markdown: string, file: string): Sample[] {
  const lines = markdown.split('\n');
  const samples: Sample[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i]!);
    if (!open) continue;
    const end = lines.findIndex((l, j) => j > i && l.trim() === '```');
    if (end < 0) throw new Error(`${file}:${i + 1}: a code block that is never closed`);
    const language = open[1]!;
    const directive = i > 0 ? DIRECTIVE.exec(lines[i - 1]!) : null;
    if (RUNNABLE.has(language)) {
      const sample: Sample = { file, line: i + 1, language: language as SampleLanguage, code: lines.slice(i + 1, end).join('\n') + '\n' };
      if (directive?.[1] === 'not run') {
        if (!directive[2]) throw new Error(`${file}:${i}: 'not run' needs a reason`);
        sample.notRun = directive[2];
      } else if (directive?.[1] === 'tiny') {
        sample.tiny = directive[2];
      }
      samples.push(sample);
    } else if (directive) {
      throw new Error(`${file}:${i}: a '${directive[1]}' comment before a ${language || 'plain'} block, which is never run`);
    }
    i = end;
  }
  return samples;
}

/**
 * A ts or js sample with its `tiny` values in place: each `name=value` pair replaces the value of
 * `const name = ...;`. A name with no such line is an error, so a stale comment cannot linger.
 */
export function applyTinyValues(sample: Sample): string {
  if (!sample.tiny) return sample.code;
  let code = sample.code;
  for (const pair of sample.tiny.split(/\s+/)) {
    const match = /^([A-Za-z_$][\w$]*)=(.+)$/.exec(pair);
    if (!match) throw new Error(`${sample.file}:${sample.line}: tiny value '${pair}' is not name=value`);
    const [, name, value] = match;
    const declaration = new RegExp(`(const ${name} = )[^;]+;`);
    if (!declaration.test(code)) throw new Error(`${sample.file}:${sample.line}: tiny value for '${name}', but no 'const ${name} = ...;' in the sample`);
    code = code.replace(declaration, `$1${value};`);
  }
  return code;
}
