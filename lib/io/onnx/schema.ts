// Encoding and decoding ONNX models with protobufjs and the schema subset in onnx_proto.ts (the
// official field numbers). Types here mirror only the fields the exporter writes and the op
// counter reads; protobufjs fills the rest with defaults when decoding.
import protobuf from 'protobufjs';

import { ONNX_PROTO_SUBSET } from './onnx_proto.js';
import { InternalError } from '../../errors.js';

/** TensorProto.DataType values used here. */
export const DataType = { FLOAT: 1, INT64: 7 } as const;

/** AttributeProto.AttributeType values used here. */
export const AttributeType = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7 } as const;

export interface TensorProto {
  name: string;
  dims: number[];
  dataType: number;
  rawData: Uint8Array;
}

export interface AttributeProto {
  name: string;
  type: number;
  f?: number;
  i?: number;
  s?: Uint8Array;
  t?: TensorProto;
  floats?: number[];
  ints?: number[];
}

export interface NodeProto {
  name: string;
  opType: string;
  domain?: string;
  input: string[];
  output: string[];
  attribute: AttributeProto[];
}

export interface ValueInfoProto {
  name: string;
  type: { tensorType: { elemType: number; shape: { dim: Array<{ dimValue?: number; dimParam?: string }> } } };
}

export interface GraphProto {
  name: string;
  node: NodeProto[];
  initializer: TensorProto[];
  input: ValueInfoProto[];
  output: ValueInfoProto[];
}

export interface ModelProto {
  irVersion: number;
  opsetImport: Array<{ domain: string; version: number }>;
  producerName: string;
  producerVersion: string;
  graph: GraphProto;
}

let modelType: protobuf.Type | null = null;

function modelProtoType(): protobuf.Type {
  if (!modelType) {
    const root = protobuf.parse(ONNX_PROTO_SUBSET, { keepCase: false }).root;
    modelType = root.lookupType('onnx.ModelProto');
  }
  return modelType;
}

/** Serialises a model; `verify` catches a field of the wrong type before onnxruntime does. */
export function encodeModel(model: ModelProto): Uint8Array {
  const type = modelProtoType();
  const problem = type.verify(model);
  if (problem) throw new InternalError(`ONNX model does not match the schema: ${problem}`);
  return type.encode(type.fromObject(model)).finish();
}

/** The node list of a serialised model (e.g. the one onnxruntime saves after optimizing). */
export function decodeNodes(bytes: Uint8Array): Array<{ opType: string; domain: string }> {
  const decoded = modelProtoType().toObject(modelProtoType().decode(bytes), { defaults: true }) as {
    graph?: { node?: Array<{ opType: string; domain: string }> };
  };
  return (decoded.graph?.node ?? []).map((n) => ({ opType: n.opType, domain: n.domain }));
}
