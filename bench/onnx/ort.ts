// onnxruntime-node, loaded only when present. It is deliberately not a dependency of the package:
// its npm package is about 290 MB and its install script fetches CUDA binaries from NuGet, which
// fails offline. The CPU binaries are inside the npm tarball, so installing it without scripts
// is enough for this benchmark.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { decodeNodes } from '../../lib/io/onnx/schema.js';

export const ORT_INSTALL = 'npm install --no-save --ignore-scripts onnxruntime-node';

/** The part of onnxruntime-node's API the benchmark uses. */
export interface OrtTensor {
  readonly data: Float32Array;
  readonly dims: readonly number[];
}

export interface OrtSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>>;
  endProfiling(): void;
  release(): Promise<void>;
}

export interface OrtSessionOptions {
  intraOpNumThreads?: number;
  interOpNumThreads?: number;
  executionMode?: 'sequential' | 'parallel';
  graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'layout' | 'all';
  executionProviders?: string[];
  optimizedModelFilePath?: string;
  enableProfiling?: boolean;
  profileFilePrefix?: string;
  /** 0 verbose .. 4 fatal. */
  logSeverityLevel?: 0 | 1 | 2 | 3 | 4;
}

export interface Ort {
  Tensor: new (type: 'float32', data: Float32Array, dims: readonly number[]) => OrtTensor;
  InferenceSession: { create(model: Uint8Array, options?: OrtSessionOptions): Promise<OrtSession> };
  env?: { versions?: Record<string, string> };
}

/** onnxruntime-node and its version, or why it could not be loaded. */
export async function loadOrt(): Promise<{ ort: Ort; version: string } | { missing: string }> {
  // A computed specifier keeps TypeScript from resolving a module that is usually not installed.
  const specifier = 'onnxruntime-node';
  try {
    const mod = (await import(specifier)) as Ort & { default?: Ort };
    const ort = mod.InferenceSession ? mod : mod.default!;
    return { ort, version: ort.env?.versions?.node ?? ort.env?.versions?.common ?? 'unknown' };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { missing: `onnxruntime-node could not be loaded (${message.split('\n')[0]}); get it with \`${ORT_INSTALL}\` (the CPU binaries are in the npm tarball, no download step)` };
  }
}

/**
 * The session options of the comparison: `threads` intra-op threads (the caller plus workers), no
 * inter-op parallelism, every graph optimization, the CPU provider. Errors only in the log: saving
 * the optimized graph warns that it holds machine-specific (NCHWc) layouts, which is expected here.
 */
export function sessionOptions(threads: number): OrtSessionOptions {
  return { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all', executionProviders: ['cpu'], logSeverityLevel: 3 };
}

/**
 * Which operators onnxruntime runs after its graph optimizations: it saves the optimized graph to
 * a temporary file, and the node types are counted ('domain:Op' for contributed ops, e.g.
 * 'com.microsoft:BiasGelu'). Also returns a session made with these options, ready to time.
 */
export async function createSessionWithOpCounts(ort: Ort, model: Uint8Array, threads: number): Promise<{ session: OrtSession; ops: Record<string, number> }> {
  const dir = mkdtempSync(join(tmpdir(), 'castling-ort-'));
  try {
    const file = join(dir, 'optimized.onnx');
    const session = await ort.InferenceSession.create(model, { ...sessionOptions(threads), optimizedModelFilePath: file });
    const ops: Record<string, number> = {};
    for (const n of decodeNodes(readFileSync(file))) {
      const key = n.domain && n.domain !== 'ai.onnx' ? `${n.domain}:${n.opType}` : n.opType;
      ops[key] = (ops[key] ?? 0) + 1;
    }
    return { session, ops };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
