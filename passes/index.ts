// Pipelines as plain ordered lists of passes; each step is verified after it runs.
import type { Graph } from '../src/ir/types.js';
import { verifyGraph } from '../src/ir/verify.js';
import { dce } from './dce.js';
import type { Pass } from './pass.js';
import { swigluToMoc, type MocSelection } from './swiglu-to-moc.js';

export interface Step {
  pass: Pass<any>;
  options?: unknown;
}

/** Converting a dense checkpoint: rewrite every SwiGLU FFN (unless dense), then drop what is dead. */
export function convertPipeline(selection: MocSelection | 'dense'): Step[] {
  return [...(selection === 'dense' ? [] : [{ pass: swigluToMoc, options: selection }]), { pass: dce }];
}

export function runPipeline(g: Graph, steps: Step[], onStep?: (name: string, g: Graph) => void): Graph {
  let cur = g;
  for (const s of steps) {
    cur = s.pass.run(cur, s.options);
    verifyGraph(cur);
    onStep?.(s.pass.name, cur);
  }
  return cur;
}

export { dce, swigluToMoc };
export type { MocSelection };
