// Plans: record a sequence of ops once, run it natively many times in one call. A model records
// its forward pass (or training step) per input shape; the native side then runs the whole pass
// on a worker thread, releasing each intermediate right after its last use.
import { native, type Attrs } from './native.js';
import { Tensor, type Device } from './tensor.js';
import { notATensor } from './tensor_argument.js';
import { InvalidArgTypeError, InvalidArgValueError } from './errors.js';

/** A value in a plan: an input bound at run time, a constant, or an op's output. */
export class Slot {
  /** @internal */
  constructor(
    readonly index: number,
    readonly label: string,
  ) {}
}

type NativePlan = InstanceType<typeof native.NativePlan>;

interface StepRecord {
  op: string;
  inputs: number[];
  outputs: number[];
  attrs: Attrs;
}

export class PlanBuilder {
  private readonly steps: StepRecord[] = [];
  private readonly labels: string[] = [];
  private readonly constants = new Map<number, Tensor>();
  private readonly inputs: Slot[] = [];

  private slot(label: string): Slot {
    this.labels.push(label);
    return new Slot(this.labels.length - 1, label);
  }

  /** A tensor supplied on each run, in the order inputs were declared. */
  input(label: string): Slot {
    const s = this.slot(label);
    this.inputs.push(s);
    return s;
  }

  /** A tensor fixed at build time (a weight); the plan holds it until the plan is dropped. */
  constant(tensor: Tensor, label = 'constant'): Slot {
    const s = this.slot(label);
    this.constants.set(s.index, tensor);
    return s;
  }

  /** Appends an op; returns its output slots (`outputs` of them; unrequested outputs are dropped). */
  op(name: string, inputs: Array<Slot | null | undefined>, attrs: Attrs = {}, outputs = 1): Slot[] {
    const outs = Array.from({ length: outputs }, (_, i) => this.slot(`${name}#${this.steps.length}.${i}`));
    this.steps.push({ op: name, inputs: inputs.map((s) => (s ? s.index : -1)), outputs: outs.map((s) => s.index), attrs });
    return outs;
  }

  /**
   * Compiles the plan (validated natively) returning the given slots from each run. With
   * options.device, inputs on another device are copied there for each run (a model on the GPU
   * takes images from host memory); its constants must be there already. options.cudaGraph (device
   * 'cuda'): each run is one launch of a CUDA graph captured on the first (docs/cuda.md).
   */
  build(keep: Slot[], options: { device?: Device; cudaGraph?: boolean } = {}): CompiledPlan {
    const graph = options.cudaGraph ? { cudaGraph: this.inputs.map((s) => s.index) } : undefined;
    const handle = new native.NativePlan(this.steps, this.labels.length, keep.map((s) => s.index), graph);
    return new CompiledPlan(handle, this.labels.length, [...this.inputs], new Map(this.constants), this.steps.map((s) => s.op), options.device ?? null);
  }
}

export class CompiledPlan {
  /** @internal */
  constructor(
    private readonly handle: NativePlan,
    private readonly slotCount: number,
    private readonly inputs: Slot[],
    private readonly constants: Map<number, Tensor>,
    /** The op of each step, in order. */
    readonly ops: string[],
    /** Where the inputs are moved before a run; null: where they are. */
    readonly device: Device | null = null,
  ) {}

  /** @internal How many times the plan was captured as a CUDA graph (0 when it runs without one). */
  get graphCaptures(): number {
    return this.handle.graphCaptures();
  }

  /** Number of ops in the plan. */
  get length(): number {
    return this.ops.length;
  }

  /** The run's slots, and the copies made of inputs on another device (freed after the run). */
  private bind(values: Tensor[]): { slots: Array<Tensor['handle'] | null>; copies: Tensor[] } {
    if (values.length !== this.inputs.length) {
      throw new InvalidArgValueError(`plan: got ${values.length} inputs, expected ${this.inputs.length} (${this.inputs.map((s) => s.label).join(', ')})`);
    }
    const slots: Array<Tensor['handle'] | null> = new Array(this.slotCount).fill(null);
    const copies: Tensor[] = [];
    for (const [index, tensor] of this.constants) slots[index] = tensor.handle;
    try {
      values.forEach((t, i) => {
        if (!(t instanceof Tensor)) throw new InvalidArgTypeError(`plan: input '${this.inputs[i]!.label}' must be a Tensor, ${notATensor(t)}`);
        const placed = this.device === null ? t : t.to(this.device);
        if (placed !== t) copies.push(placed);
        slots[this.inputs[i]!.index] = placed.handle;
      });
    } catch (error) {
      for (const copy of copies) copy.dispose();
      throw error;
    }
    return { slots, copies };
  }

  /** Runs the plan on a worker thread. */
  async run(...values: Tensor[]): Promise<Tensor[]> {
    const { slots, copies } = this.bind(values);
    try {
      return (await this.handle.run(slots, true)).map((h) => new Tensor(h));
    } finally {
      for (const copy of copies) copy.dispose();
    }
  }

  /** Runs the plan and reports the wall time of each op (kernel time, without the time around it). */
  async runProfiled(...values: Tensor[]): Promise<{ outputs: Tensor[]; steps: Array<{ op: string; ms: number }> }> {
    const { slots, copies } = this.bind(values);
    try {
      const out = await this.handle.run(slots, true, true);
      const ms = out.stepMs ?? [];
      return { outputs: out.map((h) => new Tensor(h)), steps: this.ops.map((op, i) => ({ op, ms: ms[i] ?? 0 })) };
    } finally {
      for (const copy of copies) copy.dispose();
    }
  }

  /** Runs the plan on the calling thread. */
  runSync(...values: Tensor[]): Tensor[] {
    const { slots, copies } = this.bind(values);
    try {
      return this.handle.run(slots, false).map((h) => new Tensor(h));
    } finally {
      for (const copy of copies) copy.dispose();
    }
  }
}
