// The Vision Transformer: parameters with timm's names, inference through a native plan per
// batch size, and weights on disk as safetensors with the config in the metadata.
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { PlanBuilder, type CompiledPlan, type Slot } from '../plan.js';
import { Tensor } from '../tensor.js';
import { resolveConfig, type VitConfig } from './config.js';
import { initialValues, parameterSpecs, type ParameterSpec } from './parameters.js';
import { SeededRandom } from './random.js';

/** What load() did with the file's tensors. */
export interface LoadReport {
  /** Parameters the file did not have, freshly initialised (a softmax checkpoint loaded as castling, say). */
  initialised: string[];
  /** Tensors in the file that the model has no use for. */
  ignored: string[];
}

export interface LoadOptions {
  /** Overrides the config stored in the file (needed for a file without one, e.g. from timm). */
  config?: Partial<VitConfig>;
}

const METADATA_FORMAT = 'castling-vit';

export class VisionTransformer {
  readonly config: VitConfig;
  private readonly params: Map<string, Tensor>;
  private readonly specs: ParameterSpec[];
  private readonly plans = new Map<number, CompiledPlan>();
  private disposed = false;
  /** Set by load(): which parameters were initialised rather than read. */
  loadReport: LoadReport = { initialised: [], ignored: [] };

  private constructor(config: VitConfig, params: Map<string, Tensor>) {
    this.config = config;
    this.params = params;
    this.specs = parameterSpecs(config);
  }

  /** A freshly initialised model (seeded by config.seed). */
  static create(config: Partial<VitConfig>): VisionTransformer {
    const resolved = resolveConfig(config);
    const rng = new SeededRandom(resolved.seed);
    const params = new Map<string, Tensor>();
    for (const spec of parameterSpecs(resolved)) params.set(spec.name, Tensor.fromArray(initialValues(spec, rng), spec.shape));
    return new VisionTransformer(resolved, params);
  }

  /**
   * Loads a safetensors file written by save(), or a timm-named checkpoint with `options.config`.
   * Parameters the file lacks are freshly initialised and listed in `model.loadReport`.
   */
  static async load(path: string, options: LoadOptions = {}): Promise<VisionTransformer> {
    const { tensors, metadata } = await readSafetensors(path);
    let stored: Partial<VitConfig> = {};
    if (metadata.config) {
      try {
        stored = JSON.parse(metadata.config) as Partial<VitConfig>;
      } catch {
        throw new Error(`${path}: the config in the file's metadata is not valid JSON`);
      }
    } else if (!options.config) {
      throw new Error(`${path}: the file has no castling-vit config in its metadata; pass { config } to load(), e.g. { config: presets.deitSmall }`);
    }
    const config = resolveConfig({ ...stored, ...options.config });
    const rng = new SeededRandom(config.seed);
    const params = new Map<string, Tensor>();
    const report: LoadReport = { initialised: [], ignored: [] };
    for (const spec of parameterSpecs(config)) {
      const fresh = initialValues(spec, rng); // drawn for every parameter, so the draws do not depend on the file
      const found = tensors.get(spec.name);
      if (!found) {
        report.initialised.push(spec.name);
        params.set(spec.name, Tensor.fromArray(fresh, spec.shape));
        continue;
      }
      if (found.shape.join() !== spec.shape.join()) {
        throw new Error(`${path}: '${spec.name}' has shape [${found.shape.join(', ')}], the config needs [${spec.shape.join(', ')}]`);
      }
      params.set(spec.name, Tensor.fromArray(found.data, spec.shape));
    }
    for (const name of tensors.keys()) if (!params.has(name)) report.ignored.push(name);
    const model = new VisionTransformer(config, params);
    model.loadReport = report;
    return model;
  }

  /** Writes the parameters and config as safetensors, atomically. */
  async save(path: string): Promise<void> {
    this.live();
    const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [name, t] of this.params) tensors.set(name, { shape: t.shape, data: t.toFloat32Array() });
    await writeSafetensors(path, tensors, { format: METADATA_FORMAT, config: JSON.stringify(this.config) });
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

  /** Logits [batch, numClasses] for images [batch, inChannels, imageSize, imageSize]. */
  async predict(images: Tensor): Promise<Tensor> {
    const batch = this.checkImages(images, 'predict');
    try {
      const [logits] = await this.inferencePlan(batch).run(images);
      return logits!;
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (message.startsWith('checkFinite:')) throw new Error(`predict: images must be finite: ${message.slice('checkFinite: '.length)}`);
      throw error;
    }
  }

  /** Frees the parameters and plans; the model cannot be used afterwards. */
  dispose(): void {
    for (const t of this.params.values()) t.dispose();
    this.plans.clear();
    this.disposed = true;
  }

  private live(): void {
    if (this.disposed) throw new Error('VisionTransformer has been disposed: it cannot be used after dispose()');
  }

  private checkImages(images: Tensor, what: string): number {
    this.live();
    if (!(images instanceof Tensor)) throw new TypeError(`${what}: images must be a Tensor [batch, ${this.config.inChannels}, ${this.config.imageSize}, ${this.config.imageSize}]`);
    const { inChannels: c, imageSize: s } = this.config;
    const shape = images.shape;
    if (shape.length !== 4 || shape[1] !== c || shape[2] !== s || shape[3] !== s || shape[0]! < 1) {
      throw new RangeError(`${what}: images have shape [${shape.join(', ')}], expected [batch, ${c}, ${s}, ${s}] with batch >= 1`);
    }
    return shape[0]!;
  }

  private param(name: string): Tensor {
    const t = this.params.get(name);
    if (!t) throw new Error(`internal: no parameter '${name}'`);
    return t;
  }

  /** The inference pass for one batch size, recorded once and cached. */
  private inferencePlan(batch: number): CompiledPlan {
    const cached = this.plans.get(batch);
    if (cached) return cached;
    const cfg = this.config;
    const p = new PlanBuilder();
    const w = (name: string) => p.constant(this.param(name), name);
    const optional = (name: string) => (this.params.has(name) ? w(name) : null);
    const one = (op: string, inputs: Array<Slot | null>, attrs = {}): Slot => p.op(op, inputs, attrs, 1)[0]!;

    const images = p.input('images');
    p.op('checkFinite', [images], {}, 0);
    let x = one('patchEmbed', [images, w('patch_embed.proj.weight'), w('patch_embed.proj.bias')]);
    x = one('assembleTokens', [x, w('cls_token'), w('pos_embed')]);
    for (let i = 0; i < cfg.depth; i++) {
      const b = `blocks.${i}`;
      const h = one('layerNorm', [x, w(`${b}.norm1.weight`), w(`${b}.norm1.bias`)], { eps: 1e-6 });
      const qkv = one('linear', [h, w(`${b}.attn.qkv.weight`), optional(`${b}.attn.qkv.bias`)]);
      const [q, k, v] = p.op('splitHeads', [qkv], { heads: cfg.heads, parts: 3 }, 3) as [Slot, Slot, Slot];
      const y = this.attention(p, b, q, k, v);
      const merged = one('mergeHeads', [y]);
      x = one('linear', [merged, w(`${b}.attn.proj.weight`), w(`${b}.attn.proj.bias`), x]);
      const h2 = one('layerNorm', [x, w(`${b}.norm2.weight`), w(`${b}.norm2.bias`)], { eps: 1e-6 });
      const m = one('linear', [h2, w(`${b}.mlp.fc1.weight`), w(`${b}.mlp.fc1.bias`)], { gelu: true });
      x = one('linear', [m, w(`${b}.mlp.fc2.weight`), w(`${b}.mlp.fc2.bias`), x]);
    }
    x = one('layerNorm', [x, w('norm.weight'), w('norm.bias')], { eps: 1e-6 });
    const cls = one('selectToken', [x]);
    const logits = one('linear', [cls, w('head.weight'), w('head.bias')]);
    const plan = p.build([logits]);
    this.plans.set(batch, plan);
    return plan;
  }

  private attention(p: PlanBuilder, block: string, q: Slot, k: Slot, v: Slot): Slot {
    if (this.config.attention === 'softmax') return p.op('attentionSoftmax', [q, k, v], {}, 1)[0]!;
    const weight = this.param(`${block}.attn.dconv.weight`);
    const [H, , K, K2] = weight.shape as [number, number, number, number];
    const kernel = p.constant(this.config.convForm === 'tokens' ? weight.reshape([H, K]) : weight.reshape([H, K, K2]), `${block}.attn.dconv`);
    return p.op('attentionLinearAngular', [q, k, v, kernel], { form: this.config.convForm === 'tokens' ? 0 : 1, aux: false }, 1)[0]!;
  }
}
