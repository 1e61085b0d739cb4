// The Vision Transformer as a model: its config and parameters (timm's names), inference through
// a native plan per batch size, gradients, and the plans' cache. What is done with a model lives
// with its layer and is attached to the class there (vision_transformer.ts gathers them):
// load and save in io/model_load.ts and io/model_save.ts, ONNX in io/onnx/vit_methods.ts, images
// in io/model_images.ts, trainStep in train/train_step.ts, batcher in serve/vit_batcher.ts.
import { PlanBuilder, type CompiledPlan, type Slot } from '../plan.js';
import { Tensor, type Device } from '../tensor.js';
import { assembleParameters, onDevice, requireDevice, type LoadReport } from './assemble.js';
import { checkClassLabels } from './class_labels.js';
import { resolveConfig, type VitConfig } from './config.js';
import { checkNonFinitePolicy, checkOutputsFinite, type InferenceOptions, type NonFinitePolicy } from './finite_outputs.js';
import { checkLabels, imageBatch, imagesError } from './model_inputs.js';
import type { InferenceOutput, ModelInternals } from './model_internals.js';
import { checkModelMemory } from './model_memory.js';
import { initialValues, parameterSpecs, type ParameterSpec } from './parameters.js';
import { checkPreprocessing, defaultPreprocessing, freezePreprocessing, type ImagePreprocessing } from './preprocessing.js';
import { SeededRandom } from './random.js';
import { VitGraph, dconvView, type AuxBranch } from './vit_graph.js';
import { OperationQueue } from './operation_queue.js';
import { abortReason, abortable, disposeTensor, signalOf } from './abort.js';
import { checkOptionNames } from './option_names.js';
import { DisposedError, InternalError, InvalidArgValueError, InvalidStateError } from '../errors.js';
import { asStored, requireFloat32Storage } from './weight_storage.js';

export type { LoadReport } from './assemble.js';

/** The names of predict's and embed's options (InferenceOptions). */
const INFERENCE_OPTIONS = ['signal', 'nonFinite'] as const satisfies ReadonlyArray<keyof InferenceOptions>;

export interface CreateOptions {
  /** The most bytes the model's parameters may take (default: half of this machine's memory). */
  memoryBudget?: number;
}

/** The private constructor and members, for modelFromParameters and internals (set in the class's static block). */
let construct: (config: VitConfig, params: Map<string, Tensor>) => VisionTransformer;
let internalsOf: (model: VisionTransformer) => ModelInternals;

export class VisionTransformer {
  /** The config now: castle() moves a castling model's castlingForm to 'inference'. */
  private currentConfig: VitConfig;
  private readonly params: Map<string, Tensor>;
  private readonly specs: ParameterSpec[];
  private readonly plans = new Map<string, CompiledPlan>();
  private disposed = false;
  /** Castling models in training form: the auxiliary masked softmax branch; null once off. */
  private auxBranch: AuxBranch | null;
  private castledForGood: boolean;
  private planOptimizer: object | null = null;
  /** Set by load(): which parameters were initialised rather than read. */
  loadReport: LoadReport = { initialised: [], ignored: [], resized: [] };
  private imagePreprocessing: Readonly<ImagePreprocessing>;
  private classLabels: readonly string[] | null = null;
  /** predict, trainStep, save, ... in call order: reads together, updates alone (operation_queue.ts). */
  private readonly queue = new OperationQueue();

  static {
    construct = (config, params) => new VisionTransformer(config, params);
    // The private members the layers above use (model_internals.ts), type-checked against it here.
    internalsOf = (m) => ({
      params: m.params,
      queue: m.queue,
      get auxBranch() {
        return m.auxBranch;
      },
      get castledForGood() {
        return m.castledForGood;
      },
      get imagePreprocessing() {
        return m.imagePreprocessing;
      },
      set imagePreprocessing(value) {
        m.imagePreprocessing = value;
      },
      get classLabels() {
        return m.classLabels;
      },
      set classLabels(value) {
        m.classLabels = value;
      },
      live: () => m.live(),
      setAux: (aux) => m.setAux(aux),
      checkImages: (images, what) => m.checkImages(images, what),
      trainingPlan: (key, optimizer, record) => m.trainingPlan(key, optimizer, record),
      inferenceNow: (images, batch, output, nonFinite) => m.inferenceNow(images, batch, output, nonFinite),
    });
  }

  private constructor(config: VitConfig, params: Map<string, Tensor>) {
    this.currentConfig = config;
    this.params = params;
    this.specs = parameterSpecs(config);
    this.castledForGood = config.attention !== 'castling' || config.castlingForm === 'inference';
    this.auxBranch = this.castledForGood ? null : { tau: 0.02, l1: 0 };
    this.imagePreprocessing = freezePreprocessing(defaultPreprocessing(config.inChannels));
  }

  /** The model's config, castlingForm included (saved with it, shown by `castling-vit info`). */
  get config(): VitConfig {
    return this.currentConfig;
  }

  /**
   * How image files are prepared for this model (readImages, classify): per-channel mean and std,
   * crop fraction, resampling. Saved with the model; set it to what the model was trained with.
   */
  get preprocessing(): Readonly<ImagePreprocessing> {
    return this.imagePreprocessing;
  }

  set preprocessing(value: ImagePreprocessing) {
    this.imagePreprocessing = freezePreprocessing(checkPreprocessing(value, this.config.inChannels, 'model.preprocessing'));
  }

  /** Class labels, one per class (saved with the model), or null: classes are named by index. */
  get labels(): readonly string[] | null {
    return this.classLabels;
  }

  set labels(value: readonly string[] | null) {
    this.classLabels = value === null ? null : Object.freeze(checkClassLabels(value, this.config.numClasses, 'model.labels'));
  }

  /** True once the auxiliary branch is gone for good (always true for softmax models). */
  get castled(): boolean {
    return this.castledForGood;
  }

  /** The auxiliary branch's threshold now, or null when the branch is off. */
  get auxTau(): number | null {
    return this.auxBranch?.tau ?? null;
  }

  /**
   * The switch: drops the auxiliary masked softmax branch for good, leaving the linear-angular
   * attention alone (linear in the number of tokens). Exact once the castling schedule has ended.
   * Softmax and Sparsifiner models have no such branch: for them it changes nothing.
   */
  castle(): void {
    this.live();
    this.queue.requireIdle('castle()');
    this.castledForGood = true;
    if (this.currentConfig.attention === 'castling') this.currentConfig = { ...this.currentConfig, castlingForm: 'inference' };
    this.setAux(null);
  }

  /**
   * Sets the auxiliary branch by hand (custom schedules): a threshold tau in [0, 1) and an L1
   * weight, or null to switch it off until the next trainStep with a castling schedule.
   */
  setAuxBranch(aux: AuxBranch | null): void {
    this.live();
    this.queue.requireIdle('setAuxBranch()');
    if (this.config.attention !== 'castling') throw new InvalidStateError('setAuxBranch: only castling models have an auxiliary branch');
    if (this.castledForGood && aux) throw new InvalidStateError('setAuxBranch: the model is castled; the auxiliary branch is gone for good');
    if (aux && !(aux.tau >= 0 && aux.tau < 1 && aux.l1 >= 0)) throw new InvalidArgValueError(`setAuxBranch: expected tau in [0, 1) and l1 >= 0, got tau=${aux.tau} l1=${aux.l1}`);
    this.setAux(aux ? { tau: aux.tau, l1: aux.l1 } : null);
  }

  private setAux(aux: AuxBranch | null): void {
    const same = aux === this.auxBranch || (aux && this.auxBranch && aux.tau === this.auxBranch.tau && aux.l1 === this.auxBranch.l1);
    if (same) return;
    this.auxBranch = aux;
    this.plans.clear(); // recorded with the old branch state
  }

  /**
   * A freshly initialised model (seeded by config.seed). A config whose parameters would need more
   * than options.memoryBudget (default: half of this machine's memory) is refused up front.
   */
  static create(config: Partial<VitConfig>, options: CreateOptions = {}): VisionTransformer {
    const resolved = resolveConfig(config);
    requireDevice(resolved);
    checkModelMemory(resolved, options.memoryBudget, 'VisionTransformer.create');
    const rng = new SeededRandom(resolved.seed);
    const params = new Map<string, Tensor>();
    for (const spec of parameterSpecs(resolved)) params.set(spec.name, asStored(spec.name, onDevice(Tensor.fromArray(initialValues(spec, rng), spec.shape), resolved.device), resolved));
    return new VisionTransformer(resolved, params);
  }

  /**
   * A new model with `overrides` applied to this model's config, holding copies of every
   * parameter the two share (by name and shape); the others are freshly initialised and listed
   * in the new model's loadReport. How a softmax model becomes a Sparsifiner or castling model.
   */
  static from(source: VisionTransformer, overrides: Partial<VitConfig>): VisionTransformer {
    source.live();
    source.queue.requireNoUpdate('VisionTransformer.from');
    // A model made castling starts in training form (the paper's recipe), unless asked otherwise.
    const converted = source.config.attention !== 'castling' && overrides.attention === 'castling' && overrides.castlingForm === undefined;
    const config = resolveConfig({ ...source.config, ...overrides, ...(converted ? { castlingForm: 'training' as const } : {}) });
    checkModelMemory(config, undefined, 'VisionTransformer.from');
    const tensors = new Map([...source.params].map(([name, t]) => [name, { shape: t.shape, data: t.toFloat32Array() }]));
    requireDevice(config);
    const { params, report } = assembleParameters(config, tensors, 'VisionTransformer.from');
    const model = new VisionTransformer(config, params);
    model.loadReport = report;
    // The same inputs and classes (the patch embedding and head carry over unchanged).
    model.imagePreprocessing = source.imagePreprocessing;
    model.classLabels = source.classLabels;
    return model;
  }

  /** The parameters by timm name (the model's own tensors: writes to them change the model). */
  parameters(): Map<string, Tensor> {
    this.live();
    return new Map(this.params);
  }

  /** Number of scalar parameters. */
  get parameterCount(): number {
    return this.specs.reduce((n, s) => n + s.shape.reduce((a, d) => a * d, 1), 0);
  }

  /**
   * Logits [batch, numClasses] for images [batch, inChannels, imageSize, imageSize]. With
   * options.signal, aborting rejects the call at once (abort.ts: abortReason).
   */
  predict(images: Tensor, options: InferenceOptions = {}): Promise<Tensor> {
    return this.inference(images, 'logits', options);
  }

  /**
   * The embeddings the head classifies: the class token after the final LayerNorm, [batch, width]
   * (timm's forward_head(pre_logits=True)), for similarity search or a classifier of your own.
   * In call order with the model's other calls, and with options.signal, as predict.
   */
  embed(images: Tensor, options: InferenceOptions = {}): Promise<Tensor> {
    return this.inference(images, 'embeddings', options);
  }

  /** predict and embed: the inference pass to `output` in the call's turn, abortable. */
  private async inference(images: Tensor, output: InferenceOutput, options: InferenceOptions): Promise<Tensor> {
    const what = output === 'logits' ? 'predict' : 'embed';
    const batch = this.checkImages(images, what);
    checkOptionNames(options, INFERENCE_OPTIONS, what);
    const signal = signalOf(options, what);
    const nonFinite = options.nonFinite ?? 'allow';
    checkNonFinitePolicy(nonFinite, what);
    if (signal?.aborted) throw abortReason(signal);
    return abortable(this.queue.run('read', what, () => this.inferenceNow(images, batch, output, nonFinite), signal), signal, disposeTensor);
  }

  /** The inference pass without waiting for its turn: for operations already in theirs (classify). */
  private async inferenceNow(images: Tensor, batch: number, output: InferenceOutput, nonFinite: NonFinitePolicy): Promise<Tensor> {
    this.live();
    const what = output === 'logits' ? 'predict' : 'embed';
    let out: Tensor;
    try {
      [out] = (await this.inferencePlan(batch, output).run(images)) as [Tensor];
    } catch (error) {
      throw imagesError(what, error);
    }
    if (nonFinite === 'refuse') checkOutputsFinite(out, what, output);
    return out;
  }

  /**
   * The loss and the gradient of every trainable parameter for a batch, without updating anything (for
   * custom optimizers and for checking gradients). The auxiliary branch is used in its current state.
   */
  async computeGradients(images: Tensor, labels: Tensor | ArrayLike<number>, options: { labelSmoothing?: number } = {}): Promise<{ loss: number; gradients: Map<string, Tensor> }> {
    const batch = this.checkImages(images, 'computeGradients');
    requireFloat32Storage(this.config, 'computeGradients');
    const labelTensor = checkLabels(this.config, labels, batch);
    try {
      return await this.queue.run('read', 'computeGradients', () => this.gradientsNow(images, labelTensor, options));
    } finally {
      if (!(labels instanceof Tensor)) labelTensor.dispose();
    }
  }

  /** computeGradients() in its turn. */
  private async gradientsNow(images: Tensor, labels: Tensor, options: { labelSmoothing?: number }): Promise<{ loss: number; gradients: Map<string, Tensor> }> {
    this.live();
    const p = new PlanBuilder();
    const graph = this.graph(p);
    const forwardOptions = { training: true, aux: this.auxBranch };
    const f = graph.forward(p.input('images'), forwardOptions);
    const [loss, dlogits] = p.op('crossEntropy', [f.logits, p.input('labels')], { labelSmoothing: options.labelSmoothing ?? 0 }, 2);
    const grads = graph.backward(f, dlogits!, forwardOptions);
    // Every parameter with a gradient (a Sparsifiner's predictor has none: its top-k passes none).
    const names = [...this.params.keys()].filter((n) => grads.has(n));
    const outputs = await p.build([loss!, ...f.auxL1, ...names.map((n) => grads.get(n)!)], this.placement).run(images, labels);
    const scalars = outputs.slice(0, 1 + f.auxL1.length).map((t) => t.toFloat32Array()[0]!);
    const l1 = scalars.slice(1).reduce((a, b) => a + b, 0) * (this.auxBranch?.l1 ?? 0);
    const gradients = new Map<string, Tensor>();
    names.forEach((name, i) => {
      const g = outputs[1 + f.auxL1.length + i]!;
      gradients.set(name, name.endsWith('.attn.dconv.weight') ? g.reshape(this.params.get(name)!.shape) : g);
    });
    return { loss: scalars[0]! + l1, gradients };
  }

  /**
   * predict() with the wall time of each native op of the pass: the difference between the
   * pass's own wall time and the sum of its ops is what the orchestration around them costs.
   */
  async predictProfiled(images: Tensor): Promise<{ logits: Tensor; steps: Array<{ op: string; ms: number }> }> {
    const batch = this.checkImages(images, 'predict');
    return this.queue.run('read', 'predictProfiled', async () => {
      this.live();
      const { outputs, steps } = await this.inferencePlan(batch).runProfiled(images);
      return { logits: outputs[0]!, steps };
    });
  }

  /** Frees the parameters and plans; the model cannot be used afterwards. */
  dispose(): void {
    for (const t of this.params.values()) t.dispose();
    this.plans.clear();
    this.disposed = true;
  }

  private live(): void {
    if (this.disposed) throw new DisposedError('VisionTransformer has been disposed: it cannot be used after dispose()');
  }

  private checkImages(images: Tensor, what: string): number {
    this.live();
    return imageBatch(this.config, images, what);
  }

  /**
   * A training plan from the cache, or recorded by `record`. The training plans of one kind of
   * step are kept at a time (keys 'group|plan': an accumulated step has a plan per micro-batch
   * size and one for the update; the schedule changes the auxiliary branch's threshold step by
   * step during its ramp), and a new optimizer means new moment tensors: new plans.
   */
  private trainingPlan(key: string, optimizer: object, record: (p: PlanBuilder, graph: VitGraph) => Slot[]): CompiledPlan {
    const cached = this.plans.get(key);
    if (cached && this.planOptimizer === optimizer) return cached;
    const group = key.split('|')[0]!;
    const stale = (k: string) => !k.startsWith('predict:') && (this.planOptimizer !== optimizer || k.split('|')[0] !== group);
    for (const k of [...this.plans.keys()]) if (stale(k)) this.plans.delete(k);
    this.planOptimizer = optimizer;
    const p = new PlanBuilder();
    const plan = p.build(record(p, this.graph(p)), this.placement);
    this.plans.set(key, plan);
    return plan;
  }

  private param(name: string): Tensor {
    const t = this.params.get(name);
    if (!t) throw new InternalError(`internal: no parameter '${name}'`);
    return t;
  }

  /** The inference pass for one batch size, to the logits or the embeddings, recorded once and cached. */
  private inferencePlan(batch: number, output: InferenceOutput = 'logits'): CompiledPlan {
    const key = `predict:${batch}:${this.auxBranch?.tau ?? 'off'}:${output}`;
    const cached = this.plans.get(key);
    if (cached) return cached;
    const p = new PlanBuilder();
    const graph = this.graph(p);
    const f = graph.forward(p.input('images'), { training: false, aux: this.auxBranch });
    const plan = p.build([output === 'logits' ? f.logits : f.cls], { ...this.placement, cudaGraph: this.config.cudaGraph });
    this.plans.set(key, plan);
    return plan;
  }

  /** Plans run where the parameters are: their inputs (images, labels, ...) are moved there. */
  private get placement(): { device: Device } {
    return { device: this.config.device };
  }

  private graph(p: PlanBuilder): VitGraph {
    const constants = new Map<string, Slot>();
    const param = (name: string) => {
      let s = constants.get(name);
      if (!s) constants.set(name, (s = p.constant(this.param(name), name)));
      return s;
    };
    const dconv = (block: number) => {
      const name = `blocks.${block}.attn.dconv.weight`;
      let s = constants.get(`${name}:view`);
      if (!s) constants.set(`${name}:view`, (s = p.constant(dconvView(this.param(name), this.config.convForm), name)));
      return s;
    };
    return new VitGraph(p, this.config, param, (name) => this.params.has(name), dconv);
  }
}

/**
 * A model of `config` holding `params` (made by assembleParameters: every parameter of the config,
 * on its device), for the file formats that read a model.
 */
export function modelFromParameters(config: VitConfig, params: Map<string, Tensor>): VisionTransformer {
  return construct(config, params);
}

/**
 * The members of `model` that its formats and workflows use (model_internals.ts): the class's
 * private members, reached through here so that the package's users do not see them.
 */
export function internals(model: VisionTransformer): ModelInternals {
  return internalsOf(model);
}
