// The ONNX-level dataflow graph the matcher walks: who produces and who consumes each value, which
// values are initializers, and which fold to constants. Values are looked up by the names the file
// uses only to connect nodes; no name is ever interpreted.
import { UserError } from '../../util/errors.js';
import { foldNode, MAX_FOLD, type Const } from './fold.js';
import type { OnnxModel, OnnxNode } from './model.js';
import { initializerValues, isFloatType, locateInitializer, type ExternalFiles, type OnnxInitializer } from './tensors.js';
import { elementCount } from '../tensor.js';

export class OnnxGraph {
  readonly producer = new Map<string, OnnxNode>();
  readonly consumers = new Map<string, OnnxNode[]>();
  readonly inits = new Map<string, OnnxInitializer>();
  readonly consts = new Map<string, Const>();

  constructor(readonly model: OnnxModel, files: ExternalFiles) {
    for (const t of model.initializers) {
      const init = locateInitializer(t, files);
      this.inits.set(init.name, init);
      if (elementCount(init.dims) <= MAX_FOLD / 16) {
        const data = initializerValues(init);
        if (data) this.consts.set(init.name, { float: isFloatType(init.dataType), dims: init.dims, data });
      }
    }
    const toConst = (a: { value: Parameters<typeof locateInitializer>[0] }) => {
      const init = locateInitializer(a.value, files);
      const data = elementCount(init.dims) <= MAX_FOLD ? initializerValues(init) : undefined;
      return data ? { float: isFloatType(init.dataType), dims: init.dims, data } : undefined;
    };
    for (const n of model.nodes) {
      for (const o of n.outputs) {
        if (o === '') continue;
        if (this.producer.has(o) || this.inits.has(o)) throw new UserError(`${model.path}: value ${JSON.stringify(o).slice(0, 80)} is produced twice (not a valid ONNX graph)`);
        this.producer.set(o, n);
      }
      for (const i of n.inputs) {
        if (i === '') continue;
        let list = this.consumers.get(i);
        if (!list) this.consumers.set(i, (list = []));
        list.push(n);
      }
      const folded = foldNode(n, n.inputs.map((i) => this.consts.get(i)), toConst);
      if (folded && n.outputs[0]) this.consts.set(n.outputs[0], folded);
    }
  }

  users(v: string): OnnxNode[] {
    return this.consumers.get(v) ?? [];
  }

  /** The single number a value folds to (any shape of one element), if it does. */
  scalar(v: string | undefined): number | undefined {
    const c = v === undefined ? undefined : this.consts.get(v);
    return c && c.data.length === 1 ? c.data[0] : undefined;
  }

  /** A 2-D initializer (a weight matrix), if `v` is one. */
  matrix(v: string | undefined): OnnxInitializer | undefined {
    const i = v === undefined ? undefined : this.inits.get(v);
    return i && i.dims.length === 2 ? i : undefined;
  }

  /** Whether `v` is computed at run time (not an initializer, not folded). */
  dynamic(v: string): boolean {
    return !this.inits.has(v) && !this.consts.has(v);
  }

  /** Every node `v` depends on, walking producers back (through folded values too), `v`'s producer included. */
  ancestors(v: string): Set<OnnxNode> {
    const seen = new Set<OnnxNode>();
    const stack = [v];
    while (stack.length > 0) {
      const p = this.producer.get(stack.pop()!);
      if (!p || seen.has(p)) continue;
      seen.add(p);
      for (const i of p.inputs) if (i !== '') stack.push(i);
    }
    return seen;
  }

  /** Every node that depends on `v`, walking consumers forward (v's own consumers included). */
  descendants(v: string): Set<OnnxNode> {
    const seen = new Set<OnnxNode>();
    const stack = [v];
    while (stack.length > 0) {
      for (const n of this.users(stack.pop()!)) {
        if (seen.has(n)) continue;
        seen.add(n);
        for (const o of n.outputs) if (o !== '') stack.push(o);
      }
    }
    return seen;
  }

  /** Whether value `from` flows into value `to`. */
  reaches(from: string, to: string): boolean {
    if (from === to) return true;
    for (const n of this.ancestors(to)) if (n.inputs.includes(from)) return true;
    return false;
  }
}
