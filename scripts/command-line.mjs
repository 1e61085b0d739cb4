// The command lines of the developer scripts (op-cpu-profile.mjs, compare-addons.mjs): node:util's
// parseArgs, with a bad option or value named in one line beside the script's usage and exit
// status 2, never a stack trace.
import { parseArgs } from 'node:util';

/**
 * parseArgs(config)'s values and positionals, plus usageError(message), which prints the message
 * and the usage and exits with status 2, and positiveIntegers(...names), which checks those options.
 */
export function readCommandLine(script, usage, config) {
  const usageError = (message) => {
    console.error(`${script}: ${message}\n${usage}`);
    process.exit(2);
  };
  let parsed;
  try {
    parsed = parseArgs(config);
  } catch (error) {
    usageError(error.message);
  }
  const positiveIntegers = (...names) => {
    for (const name of names) {
      const n = Number(parsed.values[name]);
      if (!(Number.isInteger(n) && n >= 1)) usageError(`--${name} is '${parsed.values[name]}', expected a positive integer`);
    }
  };
  return { values: parsed.values, positionals: parsed.positionals ?? [], usageError, positiveIntegers };
}
