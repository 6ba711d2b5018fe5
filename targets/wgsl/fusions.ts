// The fusion only the WGSL lowering makes, found on the shared facts (targets/lowering/): with the
// gpu kernels, a MoC FFN selected by Top-K runs in three dispatches (kernels/moc-fused.ts) — the
// gate GEMV also counts a histogram; select + gather + up + SiLU·mul become mocSelectUp; moc_down
// becomes mocDownMasked. The CUDA target fuses the same FFN differently (an up·down launch after
// its Top-K), because its kernels differ.
import type { GraphFacts, Node } from '../lowering/analysis.js';
import type { SiluMul } from '../lowering/fusion.js';
import { MAX_SELECT_CHANNELS } from './kernels/moc.js';
import { MAX_FUSED_K } from './kernels/moc-fused.js';

export interface FusedMocFfn {
  select: Node;
  gate: Node;
  /** The silu·mul's name. */
  mul: string;
  down: Node;
}

/**
 * The MoC FFNs the fused kernels can run: Top-K selection (K ≤ MAX_FUSED_K of at most
 * MAX_SELECT_CHANNELS) over a linear's gate, with the kept indices read only by the gather, the up
 * projection and the down projection, the gate only by the selection and the gather, and the
 * product only by the down projection. In the order of `mocUps`.
 */
export function fusedMocFfns(f: GraphFacts, mocUps: Map<string, Required<SiluMul>['moc']>): FusedMocFfn[] {
  const found: FusedMocFfn[] = [];
  for (const [mul, { gather, up }] of mocUps) {
    const select = f.producer(up.inputs[2]), gate = f.producer(gather.inputs[0]);
    const down = f.readerNodes(select?.name ?? '').find((r) => r.op === 'moc_down');
    if (select?.op !== 'moc_select' || select.attrs.k === undefined || gate?.op !== 'linear' || !down) continue;
    const F = f.widthOf(gather.inputs[0]!), K = select.attrs.k as number;
    const onlyReaders = f.useCount(select.name) === 3 && f.useCount(gate.name) === 2 && f.useCount(mul) === 1
      && down.inputs[0]!.kind === 'value' && down.inputs[0]!.name === mul && down.inputs[2]!.name === select.name;
    if (!onlyReaders || K > MAX_FUSED_K || F > MAX_SELECT_CHANNELS) continue;
    found.push({ select, gate, mul, down });
  }
  return found;
}
