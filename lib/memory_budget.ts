// The memory a model or a file may claim before anything is allocated. A few hundred bytes of
// header can describe a model of many gigabytes; sizes are checked against this budget up front so
// that such a file or config is an error that says how much it would need, not an out-of-memory
// kill or an uncatchable std::bad_alloc halfway through.
import { totalmem } from 'node:os';
import { InvalidArgValueError } from './errors.js';

/** The default budget: half of this machine's memory. */
export function defaultMemoryBudget(): number {
  return Math.floor(totalmem() / 2);
}

/** Bytes as people read them: 1.5 GiB, 300.0 MiB, 12 bytes. */
export function formatBytes(bytes: number): string {
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  if (bytes < 1024) return `${bytes} bytes`;
  let value = bytes;
  let unit = -1;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** The budget option as given, or the default; a bad value is the caller's error, named. */
export function memoryBudgetOf(budget: number | undefined, what: string): number {
  if (budget === undefined) return defaultMemoryBudget();
  if (typeof budget !== 'number' || !(budget > 0) || !Number.isFinite(budget)) {
    throw new InvalidArgValueError(`${what}: memoryBudget is ${JSON.stringify(budget)}, expected a positive number of bytes`);
  }
  return budget;
}

/** A sentence for errors: the budget and where it came from. */
export function budgetText(budget: number, given: boolean): string {
  return given ? `the memory budget of ${formatBytes(budget)}` : `the memory budget of ${formatBytes(budget)} (half of this machine's memory)`;
}
