// Constant folding over small tensors: Constant nodes, small initializers and every node whose inputs
// are all constant (shape arithmetic, Cast, Unsqueeze, Concat, Gather, Range, the RoPE frequency
// table when the exporter computes it from constants...) become plain number arrays, so the matcher
// reads eps, theta, head counts and slice bounds from values rather than from any name.
import { intAttr, intsAttr, type OnnxAttr, type OnnxNode } from './model.js';
import { ONNX_DTYPE } from '../../onnx/proto.js';
import { elementCount } from '../tensor.js';
import { isFloatType } from './tensors.js';

/** A folded value: numbers in row-major order (int64 beyond 2^53 saturates; bools are 0/1). */
export interface Const {
  float: boolean;
  dims: number[];
  data: number[];
}

/** Folded tensors larger than this are left to run time (they are weights or activations, not shapes). */
export const MAX_FOLD = 1 << 16;

const strides = (dims: number[]): number[] => {
  const s = new Array<number>(dims.length).fill(1);
  for (let i = dims.length - 2; i >= 0; i--) s[i] = s[i + 1]! * dims[i + 1]!;
  return s;
};
const normAxis = (a: number, rank: number): number => (a < 0 ? a + rank : a);

/** Out[i] = f(index vector of i in `dims`); the helper every shape-changing fold uses. */
function build(dims: number[], at: (idx: number[]) => number): number[] {
  const n = elementCount(dims);
  const out = new Array<number>(n);
  const idx = new Array<number>(dims.length).fill(0);
  for (let i = 0; i < n; i++) {
    out[i] = at(idx);
    for (let d = dims.length - 1; d >= 0; d--) {
      if (++idx[d]! < dims[d]!) break;
      idx[d] = 0;
    }
  }
  return out;
}

const get = (c: Const, idx: number[]): number => {
  const s = strides(c.dims);
  let o = 0;
  for (let d = 0; d < c.dims.length; d++) o += idx[d]! * s[d]!;
  return c.data[o]!;
};

function broadcastDims(a: number[], b: number[]): number[] | undefined {
  const r = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < r; i++) {
    const x = a[a.length - r + i] ?? 1;
    const y = b[b.length - r + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) return undefined;
    out.push(x === 1 ? y : x);
  }
  return out;
}

function binary(a: Const, b: Const, f: (x: number, y: number) => number, float: boolean): Const | undefined {
  const dims = broadcastDims(a.dims, b.dims);
  if (!dims) return undefined;
  const pick = (c: Const, idx: number[]) => get(c, idx.slice(idx.length - c.dims.length).map((v, i) => (c.dims[i] === 1 ? 0 : v)));
  return { float, dims, data: build(dims, (idx) => f(pick(a, idx), pick(b, idx))) };
}

const BINARY: Record<string, (x: number, y: number) => number> = {
  Add: (x, y) => x + y, Sub: (x, y) => x - y, Mul: (x, y) => x * y, Pow: (x, y) => x ** y,
  Max: Math.max, Min: Math.min, Equal: (x, y) => +(x === y), Less: (x, y) => +(x < y), Greater: (x, y) => +(x > y),
  LessOrEqual: (x, y) => +(x <= y), And: (x, y) => +(!!x && !!y), Or: (x, y) => +(!!x || !!y),
};
const UNARY: Record<string, (x: number) => number> = {
  Neg: (x) => -x, Sqrt: Math.sqrt, Reciprocal: (x) => 1 / x, Cos: Math.cos, Sin: Math.sin,
  Sigmoid: (x) => 1 / (1 + Math.exp(-x)), Not: (x) => +!x, Identity: (x) => x,
};
const COMPARISONS = new Set(['Equal', 'Less', 'Greater', 'LessOrEqual', 'And', 'Or', 'Not']);


/**
 * The outputs of `n` when its inputs (`ins`, undefined where not constant or omitted) allow; undefined
 * when the node is not foldable. `tensorConst` turns a Constant's tensor attribute into a Const.
 */
export function foldNode(n: OnnxNode, ins: Array<Const | undefined>, tensorConst: (a: OnnxAttr & { kind: 'tensor' }) => Const | undefined): Const | undefined {
  if (n.op === 'Constant') {
    for (const a of n.attrs.values()) {
      if (a.kind === 'tensor') return tensorConst(a);
      if (a.kind === 'float') return { float: true, dims: [], data: [a.value] };
      if (a.kind === 'int') return { float: false, dims: [], data: [a.value] };
      if (a.kind === 'floats') return { float: true, dims: [a.value.length], data: a.value };
      if (a.kind === 'ints') return { float: false, dims: [a.value.length], data: a.value };
    }
    return undefined;
  }
  const present = n.inputs.map((name, i) => (name === '' ? null : ins[i]));
  if (present.some((c) => c === undefined)) return undefined;
  const [a, b, c, d, e] = present as Array<Const | null>;
  if (!a) return undefined;
  const r = foldWith(n, a, b ?? undefined, c ?? undefined, d ?? undefined, e ?? undefined, present.length);
  return r && r.data.length <= MAX_FOLD ? r : undefined;
}

function foldWith(n: OnnxNode, a: Const, b: Const | undefined, c: Const | undefined, d: Const | undefined, e: Const | undefined, count: number): Const | undefined {
  const rank = a.dims.length;
  if (BINARY[n.op] && b) return binary(a, b, BINARY[n.op]!, !COMPARISONS.has(n.op) && (a.float || b.float));
  if (n.op === 'Div' && b) return binary(a, b, a.float || b.float ? (x, y) => x / y : (x, y) => Math.trunc(x / y), a.float || b.float);
  if (UNARY[n.op]) return { float: !COMPARISONS.has(n.op) && (a.float || n.op === 'Sqrt' || n.op === 'Reciprocal'), dims: a.dims, data: a.data.map(UNARY[n.op]!) };
  switch (n.op) {
    case 'Cast': {
      const to = intAttr(n, 'to', ONNX_DTYPE.FLOAT);
      const float = isFloatType(to);
      return { float, dims: a.dims, data: a.data.map((x) => (to === ONNX_DTYPE.BOOL ? +!!x : float ? (to === ONNX_DTYPE.FLOAT ? Math.fround(x) : x) : Math.trunc(x))) };
    }
    case 'Shape': {
      const s = normAxis(intAttr(n, 'start', 0), rank);
      const en = n.attrs.has('end') ? normAxis(intAttr(n, 'end', rank), rank) : rank;
      const dims = a.dims.slice(Math.max(0, s), Math.min(rank, en));
      return { float: false, dims: [dims.length], data: dims };
    }
    case 'Unsqueeze': {
      const axes = (b?.data ?? intsAttr(n, 'axes') ?? []).map((x) => normAxis(x, rank + (b?.data.length ?? 0)));
      const dims = [...a.dims];
      for (const ax of [...axes].sort((x, y) => x - y)) dims.splice(ax, 0, 1);
      return { ...a, dims };
    }
    case 'Flatten': {
      const ax = normAxis(intAttr(n, 'axis', 1), rank);
      return { ...a, dims: [elementCount(a.dims.slice(0, ax)), elementCount(a.dims.slice(ax))] };
    }
    case 'Squeeze': {
      const axes = (b?.data ?? intsAttr(n, 'axes'))?.map((x) => normAxis(x, rank));
      return { ...a, dims: a.dims.filter((s, i) => (axes ? !axes.includes(i) : s !== 1)) };
    }
    case 'Reshape': {
      if (!b) return undefined;
      const allowZero = intAttr(n, 'allowzero', 0) === 1;
      const dims = b.data.map((s, i) => (s === 0 && !allowZero ? a.dims[i]! : s));
      const known = dims.filter((s) => s !== -1).reduce((x, y) => x * y, 1);
      const filled = dims.map((s) => (s === -1 ? a.data.length / known : s));
      return elementCount(filled) === a.data.length ? { ...a, dims: filled } : undefined;
    }
    case 'Concat': {
      const parts = [a, b, c, d, e].slice(0, count).filter((x): x is Const => !!x);
      if (parts.length !== count) return undefined; // more than five inputs: not shape arithmetic
      const ax = normAxis(intAttr(n, 'axis', 0), rank);
      const dims = [...a.dims];
      dims[ax] = parts.reduce((s, p) => s + p.dims[ax]!, 0);
      const starts = parts.map((_, i) => parts.slice(0, i).reduce((s, p) => s + p.dims[ax]!, 0));
      return { float: a.float, dims, data: build(dims, (idx) => {
        let k = parts.length - 1;
        while (idx[ax]! < starts[k]!) k--;
        const j = [...idx];
        j[ax] = idx[ax]! - starts[k]!;
        return get(parts[k]!, j);
      }) };
    }
    case 'Gather': {
      if (!b) return undefined;
      const ax = normAxis(intAttr(n, 'axis', 0), rank);
      const dims = [...a.dims.slice(0, ax), ...b.dims, ...a.dims.slice(ax + 1)];
      return { float: a.float, dims, data: build(dims, (idx) => {
        const bi = get(b, idx.slice(ax, ax + b.dims.length));
        return get(a, [...idx.slice(0, ax), bi < 0 ? bi + a.dims[ax]! : bi, ...idx.slice(ax + b.dims.length)]);
      }) };
    }
    case 'Slice': {
      if (!b || !c) return undefined;
      const axes = (d?.data ?? b.data.map((_, i) => i)).map((x) => normAxis(x, rank));
      const lo = a.dims.map(() => 0);
      const step = a.dims.map(() => 1);
      const dims = [...a.dims];
      axes.forEach((ax, i) => {
        const s = e?.data[i] ?? 1;
        const size = a.dims[ax]!;
        const clamp = (v: number, hi: number) => Math.min(Math.max(v < 0 ? v + size : v, s > 0 ? 0 : -1), hi);
        const st = clamp(b.data[i]!, s > 0 ? size : size - 1);
        const en = clamp(c.data[i]!, s > 0 ? size : size - 1);
        lo[ax] = st;
        step[ax] = s;
        dims[ax] = Math.max(0, Math.ceil((en - st) / s));
      });
      return { float: a.float, dims, data: build(dims, (idx) => get(a, idx.map((v, k) => lo[k]! + v * step[k]!))) };
    }
    case 'Transpose': {
      const perm = intsAttr(n, 'perm') ?? a.dims.map((_, i) => rank - 1 - i);
      const dims = perm.map((p) => a.dims[p]!);
      return { float: a.float, dims, data: build(dims, (idx) => {
        const src = new Array<number>(rank);
        perm.forEach((p, i) => (src[p] = idx[i]!));
        return get(a, src);
      }) };
    }
    case 'Range': {
      if (!b || !c || c.data[0] === 0) return undefined;
      const [s, lim, dl] = [a.data[0]!, b.data[0]!, c.data[0]!];
      const len = Math.max(0, Math.ceil((lim - s) / dl));
      if (len > MAX_FOLD) return undefined;
      return { float: a.float, dims: [len], data: Array.from({ length: len }, (_, i) => s + i * dl) };
    }
    case 'Expand': {
      if (!b) return undefined;
      const dims = broadcastDims(a.dims, b.data);
      return dims ? binary(a, { float: false, dims, data: new Array<number>(elementCount(dims)).fill(0) }, (x) => x, a.float) : undefined;
    }
    case 'Where': {
      if (!b || !c) return undefined;
      const ab = binary(a, b, (x) => x, false);
      if (!ab) return undefined;
      const dims = broadcastDims(ab.dims, c.dims);
      if (!dims) return undefined;
      const pick = (k: Const, idx: number[]) => get(k, idx.slice(idx.length - k.dims.length).map((v, i) => (k.dims[i] === 1 ? 0 : v)));
      return { float: b.float, dims, data: build(dims, (idx) => (pick(a, idx) ? pick(b, idx) : pick(c, idx))) };
    }
  }
  return undefined;
}
