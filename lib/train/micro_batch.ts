// Gradient accumulation: a training step over a batch run as micro-batches of at most
// `microBatch` images, one forward and backward pass each (so only a micro-batch's activations
// are alive at a time), their gradients summed, then one clipping and AdamW update. Each
// micro-batch's mean losses (cross-entropy, distillation) are weighted by its share of the batch
// and the summed losses (the auxiliary branch's L1 term, Sparsifiner's reconstruction loss) are
// not, so the sum is the full batch's gradient up to float rounding.
import type { AdamW } from './adamw.js';
import type { CompiledPlan, PlanBuilder, Slot } from '../plan.js';
import { Tensor } from '../tensor.js';
import type { VitConfig } from '../nn/config.js';
import { learningParameters, recordAccumulatedUpdate, recordReconstructionChunk, recordTrainingChunk, type StepOptions } from './training_plans.js';
import type { VitGraph } from '../nn/vit_graph.js';
import { InvalidArgValueError } from '../errors.js';

/** The model's side of an accumulated step. */
export interface AccumulationContext {
  params: Map<string, Tensor>;
  config: VitConfig;
  optimizer: AdamW;
  /** The model's cached training plan `key` of this step's kind, recorded by `record` on a miss. */
  plan: (key: string, record: (p: PlanBuilder, graph: VitGraph) => Slot[]) => CompiledPlan;
}

/** The micro-batch size for a batch: `value` checked, at most the batch; the batch when absent. */
export function checkMicroBatch(value: unknown, batch: number): number {
  if (value === undefined) return batch;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    const shown = typeof value === 'string' ? JSON.stringify(value) : String(value);
    throw new InvalidArgValueError(`trainStep: microBatch is ${shown}, expected a positive integer (the most images per forward and backward pass)`);
  }
  return Math.min(value, batch);
}

/** Images start .. start + count of a [batch, ...] tensor, as a new tensor. */
function sliceBatch(t: Tensor, start: number, count: number): Tensor {
  const per = t.size / t.shape[0]!;
  const values = t.device === 'cpu' ? t.view() : t.toFloat32Array(); // (a view is of host memory only)
  return Tensor.fromArray(values.subarray(start * per, (start + count) * per), [count, ...t.shape.slice(1)]);
}

/**
 * Runs the micro-batches of a step in order and applies the update. `inputs(start, count)` gives
 * a micro-batch's plan inputs (disposed after its pass); `record(count, accumulate)` records its
 * plan. Returns each micro-batch's scalar outputs, with its size, and the step's learning rate.
 */
async function runAccumulated(
  ctx: AccumulationContext,
  batch: number,
  micro: number,
  names: string[],
  inputs: (start: number, count: number) => Promise<Tensor[]>,
  record: (p: PlanBuilder, graph: VitGraph, count: number, accumulate: boolean) => Slot[],
): Promise<{ chunks: Array<{ count: number; scalars: number[] }>; lr: number }> {
  const chunks: Array<{ count: number; scalars: number[] }> = [];
  let sums: Tensor[] = [];
  try {
    for (let start = 0; start < batch; start += micro) {
      const count = Math.min(micro, batch - start);
      const accumulate = start > 0;
      const plan = ctx.plan(`chunk:${count}:${accumulate}`, (p, graph) => record(p, graph, count, accumulate));
      const own = await inputs(start, count);
      let outputs: Tensor[];
      try {
        outputs = await plan.run(...own, ...sums);
      } catch (error) {
        throw inBatch(error, start * (own[0]!.size / count));
      } finally {
        for (const t of own) t.dispose();
      }
      for (const t of sums) t.dispose();
      sums = outputs.splice(outputs.length - names.length);
      chunks.push({ count, scalars: outputs.map((t) => readScalar(t)) });
    }
    const update = ctx.plan('update', (p) => recordAccumulatedUpdate(p, ctx.params, ctx.config, ctx.optimizer, names));
    const { lr } = await ctx.optimizer.takeStep(() => update.run(ctx.optimizer.scheduleTensor, ...sums));
    return { chunks, lr };
  } finally {
    for (const t of sums) t.dispose();
  }
}

/** A micro-batch's error about its images (first input), with the element's index in the whole batch. */
function inBatch(error: unknown, offset: number): unknown {
  const m = error instanceof Error ? /^checkFinite: element (\d+)/.exec(error.message) : null;
  if (!m) return error;
  return new InvalidArgValueError(`checkFinite: element ${Number(m[1]) + offset}${(error as Error).message.slice(m[0].length)}`);
}

function readScalar(t: Tensor): number {
  const v = t.toFloat32Array()[0]!;
  t.dispose();
  return v;
}

/**
 * A training step (cross-entropy, optional distillation and L1 term) accumulated over
 * micro-batches. `dropScales` are the full batch's drop-path scales, `teacher` gives a
 * micro-batch's teacher logits. Returns the batch's loss, correct count and learning rate.
 */
export async function accumulatedTrainingStep(
  ctx: AccumulationContext,
  images: Tensor,
  labels: Tensor,
  o: StepOptions,
  micro: number,
  dropScales: Tensor[] | null,
  teacher: ((images: Tensor) => Promise<Tensor>) | null,
): Promise<{ loss: number; correct: number; lr: number }> {
  const batch = images.shape[0]!;
  const inputs = async (start: number, count: number): Promise<Tensor[]> => {
    const chunk = [sliceBatch(images, start, count), sliceBatch(labels, start, count)];
    if (teacher) chunk.push(await teacher(chunk[0]!));
    for (const s of dropScales ?? []) chunk.push(sliceBatch(s, start, count));
    return chunk;
  };
  const names = learningParameters(ctx.params, 'finetune');
  const record = (p: PlanBuilder, graph: VitGraph, count: number, accumulate: boolean) => recordTrainingChunk(p, graph, ctx.params, ctx.config, o, count / batch, accumulate);
  const { chunks, lr } = await runAccumulated(ctx, batch, micro, names, inputs, record);
  let loss = 0;
  let correct = 0;
  for (const { count, scalars } of chunks) {
    // Scalars: mean cross-entropy, correct count, the mean distillation loss, the L1 sums.
    const [ce, hits, ...extra] = scalars;
    const kd = o.distill ? extra.shift()! : 0;
    loss += (count / batch) * (ce! + kd) + extra.reduce((a, b) => a + b, 0) * (o.aux?.l1 ?? 0);
    correct += hits!;
  }
  return { loss, correct, lr };
}

/** Sparsifiner's stage 1 accumulated over micro-batches; returns the summed reconstruction loss. */
export async function accumulatedReconstructionStep(ctx: AccumulationContext, images: Tensor, micro: number): Promise<{ lossSum: number; lr: number }> {
  const batch = images.shape[0]!;
  const names = learningParameters(ctx.params, 'reconstruction');
  const inputs = async (start: number, count: number) => [sliceBatch(images, start, count)];
  const record = (p: PlanBuilder, graph: VitGraph, _count: number, accumulate: boolean) => recordReconstructionChunk(p, graph, ctx.params, accumulate);
  const { chunks, lr } = await runAccumulated(ctx, batch, micro, names, inputs, record);
  return { lossSum: chunks.reduce((a, c) => a + c.scalars.reduce((x, y) => x + y, 0), 0), lr };
}
