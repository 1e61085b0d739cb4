// Where the time goes, per part of the ViT, in both runtimes: castling-vit's per-op wall times
// (model.predictProfiled) and onnxruntime's per-node kernel times (its own profiler), grouped into
// the same categories so that a gap can be pinned on a GEMM shape, the attention or the glue.
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import type { Tensor, VisionTransformer } from '../../lib/index.js';
import { sessionOptions, type Ort } from './ort.js';

export interface Profile {
  rows: ProfileRow[];
  /**
   * Wall ms of the profiled passes. The sums of the rows fall short of these by what runs outside
   * the ops; onnxruntime's profiler also adds a cost to each of its ~500 nodes (its Reshapes read
   * 20-30 us), so its small-node categories read high: compare wall times from the timed rounds.
   */
  oursWallMs: number;
  ortWallMs: number;
}

export interface ProfileRow {
  category: string;
  oursMs: number;
  ortMs: number;
  /** Multiply-adds x 2 of the category per pass, for the GEMMs. */
  flops?: number;
}

const LINEAR_ROLES = ['GEMM qkv', 'GEMM proj', 'GEMM fc1 + GELU', 'GEMM fc2'] as const;

/** Adds one castling-vit pass's per-op wall times (predictProfiled's steps) to `out` by category. */
function addOurSteps(steps: Array<{ op: string; ms: number }>, depth: number, scale: number, out: Map<string, number>): void {
  // The plan's linears come in block order: qkv, proj (+ residual), fc1 (+ GELU), fc2 (+ residual); then the head.
  let linear = 0;
  for (const s of steps) {
    let category: string;
    if (s.op === 'linear') category = linear < 4 * depth ? LINEAR_ROLES[linear++ % 4]! : 'GEMM head';
    else if (s.op.startsWith('attention')) category = 'attention core';
    else if (s.op === 'splitHeads' || s.op === 'mergeHeads') category = 'layout (heads, reshapes)';
    else if (s.op === 'layerNorm') category = 'LayerNorm';
    else if (s.op === 'patchEmbed' || s.op === 'assembleTokens') category = 'patch embed + tokens';
    else category = 'other';
    out.set(category, (out.get(category) ?? 0) + s.ms * scale);
  }
}

interface OrtEvent {
  cat?: string;
  name: string;
  dur: number;
  args?: { op_name?: string };
}

function ortCategory(name: string, op: string): string {
  if (op === 'Gelu' || op === 'BiasGelu' || name.includes('mlp.fc1/')) return 'GEMM fc1 + GELU';
  if (name.includes('attn.qkv/')) return 'GEMM qkv';
  if (name.includes('attn.proj/')) return 'GEMM proj';
  if (name.includes('mlp.fc2/')) return 'GEMM fc2';
  if (name.includes('logits')) return 'GEMM head';
  if (op === 'LayerNormalization' || op === 'SkipLayerNormalization') return 'LayerNorm';
  if (['Reshape', 'Transpose', 'Split', 'Squeeze', 'Unsqueeze'].includes(op)) return 'layout (heads, reshapes)';
  if (name.includes('/attn/')) return 'attention core';
  if (/\/blocks\.\d+\/Add/.test(name)) return 'residual Add';
  if (name.includes('patch_embed') || op === 'ReorderOutput' || op === 'Concat' || op === 'Expand' || name.startsWith('Add:/Add')) return 'patch embed + tokens';
  return 'other';
}

/**
 * Average ms per pass and category in both runtimes over `runs` passes each, interleaved (a turn of
 * ours, a turn of onnxruntime's) so that both see the same load on a shared machine. Each turn is
 * an unprofiled run and then the profiled one, back to back, as the timing rounds do.
 * onnxruntime's figures come from its profiler (a session of its own with profiling on).
 */
async function profileInterleaved(model: VisionTransformer, images: Tensor, ort: Ort, bytes: Uint8Array, data: Float32Array, threads: number, runs: number, settleMs: number) {
  const ours = new Map<string, number>();
  const theirs = new Map<string, number>();
  let oursWall = 0;
  let ortWall = 0;
  const dir = mkdtempSync(join(tmpdir(), 'castling-ort-profile-'));
  try {
    const session = await ort.InferenceSession.create(bytes, { ...sessionOptions(threads), enableProfiling: true, profileFilePrefix: join(dir, 'ort') });
    const feeds = { [session.inputNames[0]!]: new ort.Tensor('float32', data, images.shape) };
    for (let r = 0; r < runs; r++) {
      (await model.predict(images)).dispose();
      let start = performance.now();
      const { logits, steps } = await model.predictProfiled(images);
      oursWall += (performance.now() - start) / runs;
      logits.dispose();
      addOurSteps(steps, model.config.depth, 1 / runs, ours);
      await sleep(settleMs);
      await session.run(feeds);
      start = performance.now();
      await session.run(feeds);
      ortWall += (performance.now() - start) / runs;
      await sleep(settleMs); // onnxruntime's workers spin a while after a run
    }
    session.endProfiling();
    await session.release();
    const file = readdirSync(dir).find((f) => f.endsWith('.json'));
    if (!file) throw new Error('onnxruntime wrote no profile');
    const events = (JSON.parse(readFileSync(join(dir, file), 'utf8')) as OrtEvent[]).filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time'));
    // Every pass runs the same nodes, so pass p is events [p * perPass, (p + 1) * perPass); the
    // odd passes are the second of each turn, the ones kept.
    const perPass = events.length / (2 * runs);
    if (!Number.isInteger(perPass)) throw new Error(`onnxruntime's profile has ${events.length} node events for ${2 * runs} passes`);
    for (let p = 1; p < 2 * runs; p += 2) {
      for (const e of events.slice(p * perPass, (p + 1) * perPass)) {
        const category = ortCategory(e.name, e.args?.op_name ?? '');
        theirs.set(category, (theirs.get(category) ?? 0) + e.dur / 1000 / runs);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { ours, theirs, oursWall, ortWall };
}

/** Both runtimes' time per category for one model and batch, GEMM FLOPs attached. */
export async function profileBoth(model: VisionTransformer, images: Tensor, ort: Ort, bytes: Uint8Array, data: Float32Array, threads: number, o: { runs: number; settleMs: number }): Promise<Profile> {
  const { ours, theirs, oursWall, ortWall } = await profileInterleaved(model, images, ort, bytes, data, threads, o.runs, o.settleMs);
  const cfg = model.config;
  const M = images.shape[0]! * ((cfg.imageSize / cfg.patchSize) ** 2 + 1);
  const C = cfg.width;
  const hidden = C * cfg.mlpRatio;
  const gemmFlops: Record<string, number> = {
    'GEMM qkv': 2 * M * C * 3 * C * cfg.depth,
    'GEMM proj': 2 * M * C * C * cfg.depth,
    'GEMM fc1 + GELU': 2 * M * C * hidden * cfg.depth,
    'GEMM fc2': 2 * M * hidden * C * cfg.depth,
  };
  const categories = [...new Set([...ours.keys(), ...theirs.keys()])];
  const rows = categories
    .map((category) => ({ category, oursMs: ours.get(category) ?? 0, ortMs: theirs.get(category) ?? 0, flops: gemmFlops[category] }))
    .sort((a, b) => Math.max(b.oursMs, b.ortMs) - Math.max(a.oursMs, a.ortMs));
  return { rows, oursWallMs: oursWall, ortWallMs: ortWall };
}

/** The profile as aligned text lines: category, ms of each, difference, and GFLOP/s for the GEMMs. */
export function formatProfile(profile: Profile): string[] {
  const rows = profile.rows;
  const gf = (flops: number | undefined, ms: number) => (flops && ms > 0 ? `${(flops / ms / 1e6).toFixed(0)} GFLOP/s` : '');
  const lines = rows.map((r) => [r.category, r.oursMs.toFixed(2), r.ortMs.toFixed(2), (r.oursMs - r.ortMs).toFixed(2), gf(r.flops, r.oursMs), gf(r.flops, r.ortMs)]);
  const total = rows.reduce((a, r) => [a[0]! + r.oursMs, a[1]! + r.ortMs], [0, 0]);
  lines.push(['sum of ops', total[0]!.toFixed(2), total[1]!.toFixed(2), (total[0]! - total[1]!).toFixed(2), '', '']);
  const { oursWallMs: ow, ortWallMs: tw } = profile;
  lines.push(['wall, profiled pass', ow.toFixed(2), tw.toFixed(2), (ow - tw).toFixed(2), '', '']);
  const header = ['category', 'ours ms', 'ORT ms', 'ours-ORT', 'ours rate', 'ORT rate'];
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [fmt(header), ...lines.map(fmt)];
}
