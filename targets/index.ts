// The registry of targets. Code outside targets/ picks a target by name here, never with if/else on names.
import { UserError } from '../src/util/errors.js';
import { cudaTarget } from './cuda/index.js';
import { refTarget } from './ref/index.js';
import { wgslTarget } from './wgsl/index.js';
import type { RunnableModel, Target } from './target.js';

export const TARGETS: ReadonlyMap<string, Target> = new Map([refTarget, cudaTarget, wgslTarget].map((t) => [t.name, t]));

export function getTarget(name: string): Target {
  const t = TARGETS.get(name);
  if (!t) throw new UserError(`unknown target '${name}'; available: ${[...TARGETS.keys()].join(', ')}`);
  return t;
}

/** Fails clearly when a model uses an op the target lacks. */
export function checkSupported(target: Target, model: RunnableModel): void {
  const missing = [...new Set(model.graph.nodes.map((n) => n.op).filter((op) => !target.ops.has(op)))];
  if (missing.length) throw new UserError(`target ${target.name} does not support op(s): ${missing.join(', ')}`);
}
