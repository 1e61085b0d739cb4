// What a model of a config will take in memory, known from its shapes before any parameter is
// allocated, and the refusal of a config that would not fit: a file of a few hundred bytes can
// name a model of 80 GB (or a million blocks), which would otherwise be allocated and initialised
// for minutes until the process was killed.
import { budgetText, formatBytes, memoryBudgetOf } from '../memory_budget.js';
import type { VitConfig } from './config.js';
import { parameterTotals } from './parameters.js';
import { LimitExceededError } from '../errors.js';

/**
 * Memory each parameter tensor takes besides its values (its native tensor, its JavaScript object,
 * its entries in the model's maps): about 1.6 KiB measured on Node 20, rounded up.
 */
export const TENSOR_OVERHEAD_BYTES = 2048;

/** Bytes a model of `config` holds: its float32 values and each tensor's overhead. */
export function modelBytes(config: VitConfig): number {
  const { values, tensors } = parameterTotals(config);
  return values * 4 + tensors * TENSOR_OVERHEAD_BYTES;
}

/**
 * Throws a RangeError when a model of `config` would need more than the memory budget (given, or
 * half of this machine's memory). `what` starts the message: the file or the call.
 */
export function checkModelMemory(config: VitConfig, memoryBudget: number | undefined, what: string): void {
  const budget = memoryBudgetOf(memoryBudget, what);
  const bytes = modelBytes(config);
  if (bytes <= budget) return;
  const { values } = parameterTotals(config);
  throw new LimitExceededError(
    `${what}: a ViT ${config.width} wide and ${config.depth} deep (${config.imageSize}² images) has ${values} parameters and needs ${formatBytes(bytes)}, ` +
      `more than ${budgetText(budget, memoryBudget !== undefined)}; pass { memoryBudget } to allow more`,
  );
}
