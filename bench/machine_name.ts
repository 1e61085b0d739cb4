// A short, stable name for the machine a benchmark ran on, for result files named by benchmark
// and machine (bench/results/onnx-xeon-emerald-rapids.json). Virtual machines often report a
// bare model string ('Intel(R) Xeon(R) Processor', 'AMD EPYC') for quite different CPUs, so the
// CPU's family and model numbers pick the microarchitecture where they are known.
import { readFileSync } from 'node:fs';

export interface CpuId {
  vendor: string;
  family: number;
  model: number;
  stepping: number;
}

/** Microarchitectures by vendor, family and model, as the CPUID instruction reports them. */
const MICROARCHITECTURES: Array<{ vendor: string; family: number; models: number[]; name: string | ((stepping: number) => string) }> = [
  // Skylake-SP, Cascade Lake and Cooper Lake share model 85 and differ in stepping.
  { vendor: 'GenuineIntel', family: 6, models: [85], name: (s) => (s >= 10 ? 'cooper-lake' : s >= 5 ? 'cascade-lake' : 'skylake') },
  { vendor: 'GenuineIntel', family: 6, models: [106, 108], name: 'ice-lake' },
  { vendor: 'GenuineIntel', family: 6, models: [143], name: 'sapphire-rapids' },
  { vendor: 'GenuineIntel', family: 6, models: [207], name: 'emerald-rapids' },
  { vendor: 'GenuineIntel', family: 6, models: [173, 174], name: 'granite-rapids' },
  { vendor: 'AuthenticAMD', family: 23, models: [1, 8], name: 'zen' },
  { vendor: 'AuthenticAMD', family: 23, models: [49, 113], name: 'zen2' },
  { vendor: 'AuthenticAMD', family: 25, models: [1, 33, 80], name: 'zen3' },
  { vendor: 'AuthenticAMD', family: 25, models: [17, 97, 160], name: 'zen4' },
  { vendor: 'AuthenticAMD', family: 26, models: [2, 17, 36, 68], name: 'zen5' },
];

/** Lower-case words of the model string joined by '-', without trademarks and clock speeds. */
export function slug(text: string): string {
  return text
    .toLowerCase()
    .replace(/\((r|tm)\)/g, ' ')
    .replace(/@.*$/, ' ')
    .replace(/\b(cpu|processor|\d+-core)\b/g, ' ')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
}

/**
 * The machine's name from its CPU model string and, when known, its CPUID numbers: the product
 * line (xeon, epyc, ...) and the microarchitecture, else the model string with family and model.
 */
export function machineName(cpu: string, id: CpuId | null): string {
  const words = slug(cpu);
  const line = /\b(xeon|epyc|core|ryzen|threadripper)\b/.exec(words.replace(/-/g, ' '))?.[1] ?? words;
  if (!id) return words || 'unknown-cpu';
  const known = MICROARCHITECTURES.find((m) => m.vendor === id.vendor && m.family === id.family && m.models.includes(id.model));
  if (!known) return `${words || slug(id.vendor)}-f${id.family}m${id.model}`;
  const arch = typeof known.name === 'string' ? known.name : known.name(id.stepping);
  return `${line || slug(id.vendor)}-${arch}`;
}

/** The first processor's CPUID numbers from /proc/cpuinfo (Linux), or null elsewhere. */
export function readCpuId(cpuinfo = '/proc/cpuinfo'): CpuId | null {
  let text: string;
  try {
    text = readFileSync(cpuinfo, 'utf8');
  } catch {
    return null;
  }
  const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(.+)$`, 'm').exec(text)?.[1]?.trim();
  const vendor = field('vendor_id');
  const [family, model, stepping] = [field('cpu family'), field('model'), field('stepping')].map(Number);
  if (!vendor || !Number.isInteger(family) || !Number.isInteger(model)) return null;
  return { vendor, family: family!, model: model!, stepping: Number.isInteger(stepping) ? stepping! : 0 };
}
