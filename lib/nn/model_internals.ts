// What the layers above the model (its file formats, training step, image helpers, batcher) use
// of a VisionTransformer beyond its public API. They reach it through internals(model) (vit.ts):
// the members stay private to users of the package, and the model imports none of those layers.
import type { CompiledPlan, PlanBuilder, Slot } from '../plan.js';
import type { Tensor } from '../tensor.js';
import type { NonFinitePolicy } from './finite_outputs.js';
import type { OperationQueue } from './operation_queue.js';
import type { ImagePreprocessing } from './preprocessing.js';
import type { AuxBranch, VitGraph } from './vit_graph.js';

/** What an inference pass gives: the logits (predict) or the head's input (embed). */
export type InferenceOutput = 'logits' | 'embeddings';

export interface ModelInternals {
  readonly params: Map<string, Tensor>;
  /** predict, trainStep, save, ... in call order: reads together, updates alone (operation_queue.ts). */
  readonly queue: OperationQueue;
  /** Castling models in training form: the auxiliary masked softmax branch; null once off. */
  readonly auxBranch: AuxBranch | null;
  readonly castledForGood: boolean;
  imagePreprocessing: Readonly<ImagePreprocessing>;
  classLabels: readonly string[] | null;
  /** Throws once the model is disposed. */
  live(): void;
  /** Sets the auxiliary branch (its plans recorded anew when it changed). */
  setAux(aux: AuxBranch | null): void;
  /** The batch size of `images`, checked against the config (`what` names the call in errors). */
  checkImages(images: Tensor, what: string): number;
  /**
   * A training plan from the model's cache, or recorded by `record`; `optimizer` is the one whose
   * moment tensors the plans hold (a new one: new plans).
   */
  trainingPlan(key: string, optimizer: object, record: (p: PlanBuilder, graph: VitGraph) => Slot[]): CompiledPlan;
  /** The inference pass without waiting for its turn: for operations already in theirs (classify). */
  inferenceNow(images: Tensor, batch: number, output: InferenceOutput, nonFinite: NonFinitePolicy): Promise<Tensor>;
}
