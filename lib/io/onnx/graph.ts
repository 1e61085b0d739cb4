// A small builder for ONNX graphs: nodes with unique output names, float32 and int64
// initializers stored as raw_data, and attributes typed from their JavaScript values.
import { AttributeType, DataType, type AttributeProto, type ModelProto, type NodeProto, type TensorProto, type ValueInfoProto } from './schema.js';
import { InternalError } from '../../errors.js';

export type AttrValue = number | string | number[] | { float: number } | { floats: number[] };

function attribute(name: string, value: AttrValue): AttributeProto {
  if (typeof value === 'string') return { name, type: AttributeType.STRING, s: new TextEncoder().encode(value) };
  // A plain number is an INT (axis, group, perm entries...); floats are asked for explicitly,
  // as ONNX types each attribute and a float where an int is expected is a load error.
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new InternalError(`attribute ${name}: ${value} is not an integer; use { float }`);
    return { name, type: AttributeType.INT, i: value };
  }
  if (Array.isArray(value)) return { name, type: AttributeType.INTS, ints: value };
  if ('float' in value) return { name, type: AttributeType.FLOAT, f: value.float };
  return { name, type: AttributeType.FLOATS, floats: value.floats };
}

function raw(data: Float32Array | BigInt64Array): Uint8Array {
  // ONNX raw_data is little-endian, as typed arrays are on every machine Node runs on here.
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** A float32 value's type; a string dimension is a free one of that name (e.g. 'batch'). */
function valueInfo(name: string, dims: Array<number | string>): ValueInfoProto {
  const dim = dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d }));
  return { name, type: { tensorType: { elemType: DataType.FLOAT, shape: { dim } } } };
}

export class GraphBuilder {
  private readonly nodes: NodeProto[] = [];
  private readonly initializers: TensorProto[] = [];
  private readonly names = new Set<string>();
  private readonly constants = new Map<string, string>();
  private readonly inputs: ValueInfoProto[] = [];
  private readonly outputs: ValueInfoProto[] = [];

  /** A fresh value name: `base`, or `base_2`, `base_3`... when taken. */
  private unique(base: string): string {
    let name = base;
    for (let i = 2; this.names.has(name); i++) name = `${base}_${i}`;
    this.names.add(name);
    return name;
  }

  input(name: string, dims: Array<number | string>): string {
    const unique = this.unique(name);
    this.inputs.push(valueInfo(unique, dims));
    return unique;
  }

  output(name: string, dims: Array<number | string>): void {
    this.outputs.push(valueInfo(name, dims));
  }

  /** A float32 initializer (a weight), named like the parameter it holds. */
  weight(name: string, dims: number[], data: Float32Array): string {
    const size = dims.reduce((a, d) => a * d, 1);
    if (size !== data.length) throw new InternalError(`initializer ${name}: ${data.length} values for dims [${dims.join(', ')}]`);
    const unique = this.unique(name);
    this.initializers.push({ name: unique, dims, dataType: DataType.FLOAT, rawData: raw(data) });
    return unique;
  }

  /** A float32 scalar constant, shared by every node that uses the same value. */
  scalar(value: number): string {
    return this.shared(`f:${value}`, () => this.weight(`const_${value}`, [], Float32Array.of(value)));
  }

  /** An int64 vector constant (shapes, axes, pads), shared by value. */
  ints(values: number[], dims: number[] = [values.length]): string {
    return this.shared(`i:${dims.join('x')}:${values.join(',')}`, () => {
      const name = this.unique(`const_i64_${values.join('_').replace(/-/g, 'm')}`);
      this.initializers.push({ name, dims, dataType: DataType.INT64, rawData: raw(BigInt64Array.from(values.map(BigInt))) });
      return name;
    });
  }

  private shared(key: string, make: () => string): string {
    let name = this.constants.get(key);
    if (!name) this.constants.set(key, (name = make()));
    return name;
  }

  /** Adds a node; returns its output names (`outputs` of them, named after `name`). */
  node(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, o: { name: string; outputs?: number; domain?: string }): string[] {
    const count = o.outputs ?? 1;
    const outs = Array.from({ length: count }, (_, i) => this.unique(count === 1 ? o.name : `${o.name}_${i}`));
    this.nodes.push({
      name: `${opType}:${outs[0]}`,
      opType,
      domain: o.domain ?? '',
      input: inputs,
      output: outs,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outs;
  }

  /** One-output node. */
  op(opType: string, inputs: string[], name: string, attrs: Record<string, AttrValue> = {}): string {
    return this.node(opType, inputs, attrs, { name })[0]!;
  }

  model(o: { name: string; opset: number; irVersion: number; producer: string; version: string }): ModelProto {
    return {
      irVersion: o.irVersion,
      opsetImport: [{ domain: '', version: o.opset }],
      producerName: o.producer,
      producerVersion: o.version,
      graph: { name: o.name, node: this.nodes, initializer: this.initializers, input: this.inputs, output: this.outputs },
    };
  }
}
