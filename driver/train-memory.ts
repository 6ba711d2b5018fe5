// What training a model takes in memory, per checkpoint policy: the memory plan of its training
// graph (passes/memory-plan.ts) at batch·seq rows, the weight gradients and AdamW state, and beside
// the FFN part the MoC paper's per-token accounting (src/model/memory.ts) for the same rows. Used by
// `mocc inspect --train` and bench/train-memory.ts.
import type { ModelSpec } from '../src/import/spec.js';
import { elementCount } from '../src/import/tensor.js';
import type { Graph } from '../src/ir/types.js';
import { ffnActivationBytes, type FfnActivationBytes } from '../src/model/memory.js';
import { mocSummary } from '../src/package/moc-summary.js';
import { CHECKPOINT_POLICIES, policyParts, type CheckpointPolicy } from '../passes/checkpoint.js';
import { planMemory, type MemoryPlan } from '../passes/memory-plan.js';
import { trainingGraph } from './training-graph.js';
import { adamwMomentBytes, type AdamWStateDType } from '../src/train/adamw.js';
import { bf16ParamsInMode } from '../src/train/bf16-params.js';

/** Training is in f32 on the ref target (values and master weights); AdamW keeps m and v per trainable value. */
export const TRAIN_VALUE_BYTES = 4;

export interface PolicyMemory {
  policy: CheckpointPolicy;
  rows: number;
  plan: MemoryPlan;
  /** f32 elements of the trainable params. */
  trainableValues: number;
  /** AdamW's m and v: 2 × trainable × 4 bytes (f32 moments) or × 2 (bf16: o.optimizerState). */
  adamBytes: number;
  /** How those moments are stored (o.optimizerState; default f32). */
  optimizerState: AdamWStateDType;
  /** Trainable elements stored bf16 ('bf16-params': src/train/bf16-params.ts's rule; else 0): 2 bytes each where f32 weights take 4. */
  bf16ParamValues: number;
  /**
   * The paper's FFN activation bytes for these rows, all layers, and which column they come from;
   * without the FFN input x (d a token a layer) where the policy recomputes it (ffnInput false: -attn).
   */
  paper: { column: keyof FfnActivationBytes; f32: number; bf16: number; indexBytes: number; ffnInput: boolean };
}

/** Policies that apply to a graph: the moc ones need MoC layers (checkpoint.ts). */
export function applicablePolicies(g: Graph): CheckpointPolicy[] {
  const moc = g.nodes.some((n) => n.op === 'moc_select');
  return CHECKPOINT_POLICIES.filter((p) => moc || !policyParts(p).u16Indices);
}

/**
 * The paper's column for a policy: gcp variants recompute S and Z; the moc ones store indices in 16
 * bits (d_ffn ≤ 65536); the -attn ones recompute the FFN input x from the residual stream (ffnInput false).
 */
export function paperColumn(moc: boolean, policy: CheckpointPolicy): { column: keyof FfnActivationBytes; indexBytes: number; ffnInput: boolean } {
  const parts = policyParts(policy);
  const column = moc ? (parts.ffnRecompute ? 'mocGcp' : 'moc') : parts.ffnRecompute ? 'denseGcp' : 'dense';
  return { column, indexBytes: parts.u16Indices ? 2 : 4, ffnInput: !parts.attention };
}

export function trainMemory(model: { graph: Graph; spec: ModelSpec }, o: { batch: number; seq: number; policy: CheckpointPolicy; trainable?: string; optimizerState?: AdamWStateDType }): PolicyMemory {
  const rows = o.batch * o.seq;
  const g = trainingGraph(model.graph, { loss: { kind: 'cross_entropy' }, policy: o.policy, ...(o.trainable ? { trainable: o.trainable } : {}) });
  const plan = planMemory(g, { T: rows });
  const trainableValues = g.params.filter((p) => p.trainable).reduce((s, p) => s + elementCount(p.type.shape as number[]), 0);
  const bf16 = bf16ParamsInMode(g, o.optimizerState);
  const bf16ParamValues = g.params.filter((p) => bf16.has(p.name)).reduce((s, p) => s + elementCount(p.type.shape as number[]), 0);
  const summary = mocSummary(model.graph, model.spec);
  const { column, indexBytes, ffnInput } = paperColumn(summary.mode !== 'dense', o.policy);
  const indices = model.spec.dFfn <= 65536 ? indexBytes : 4;
  const x = (valueBytes: number) => (ffnInput ? 0 : model.spec.dim * valueBytes);
  const paper = (valueBytes: number) => rows * summary.perLayerK.reduce((s, k) => s + ffnActivationBytes(model.spec.dim, model.spec.dFfn, k, valueBytes, indices)[column] - x(valueBytes), 0);
  return {
    policy: o.policy, rows, plan, trainableValues, adamBytes: 2 * trainableValues * adamwMomentBytes(o.optimizerState), optimizerState: o.optimizerState ?? 'f32', bf16ParamValues,
    paper: { column, f32: paper(TRAIN_VALUE_BYTES), bf16: paper(2), indexBytes: indices, ffnInput },
  };
}
