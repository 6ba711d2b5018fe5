// The weights and host-computed constants a program names, each listed once, in the order the
// lowering first reads it (the programs list them in that order, and runtimes upload them so).
import type { Operand } from '../../src/ir/types.js';
import type { DeviceWeight, GraphFacts, Node, WeightRead } from './analysis.js';
import type { ConstDecl } from './program.js';
import { ropeTableConst } from './rope-table.js';

/** A weight read as a kernel argument: a weight buffer or a constant (a transposed weight). */
export type WeightArg = { kind: 'weight'; name: string } | { kind: 'const'; name: string };

export class DeviceInputs {
  readonly weights = new Map<string, DeviceWeight>();
  readonly consts = new Map<string, ConstDecl>();

  constructor(private readonly facts: GraphFacts) {}

  /** Operand o of n as a weight argument (a transpose becomes a constant); fails if o is no weight. */
  weight(o: Operand, n: Node): WeightRead & { arg: WeightArg } {
    const w = this.facts.weightRead(o) ?? this.facts.fail(n, `operand %${o.name} must be a weight`);
    if (w.kind === 'weight') {
      this.weights.set(w.name, { name: w.name, dtype: w.dtype, rows: w.rows, cols: w.cols });
      return { ...w, arg: { kind: 'weight', name: w.name } };
    }
    this.consts.set(w.name, { name: w.name, kind: 'transpose', of: w.of });
    return { ...w, arg: { kind: 'const', name: w.name } };
  }

  /** The RoPE table node n reads, as a constant's name. */
  ropeTable(n: Node): string {
    const c = ropeTableConst(n);
    this.consts.set(c.name, c);
    return c.name;
  }
}
