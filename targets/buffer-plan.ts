// Activation buffer planning shared by the GPU targets: a virtual buffer lives from the first step
// that touches it to the last; physical buffers of the same shape are reused once free. Same
// logical shape, not just the same size, so padding that nobody writes stays as it was.
// A step's outputs never share a buffer with its inputs: buffers are handed out for the step's
// first uses before those whose last use it is are released.

export interface PlannedBuffer {
  /** Buffers with equal keys are interchangeable. */
  key: string;
}

/**
 * Maps virtual buffer ids (indices into `vbufs`) to physical ids. `touched(i)` lists the virtual
 * buffers step i reads or writes. Returns the physical buffers (each the first virtual buffer
 * given that id) and the map.
 */
export function planBuffers<B extends PlannedBuffer>(vbufs: readonly B[], steps: number, touched: (step: number) => number[]): { buffers: (B & { id: number })[]; map: Map<number, number> } {
  const first = new Map<number, number>(), last = new Map<number, number>();
  for (let i = 0; i < steps; i++) for (const b of touched(i)) (first.has(b) || first.set(b, i), last.set(b, i));
  const order = [...first.keys()].sort((a, b) => first.get(a)! - first.get(b)! || a - b);
  const startsAt = new Map<number, number[]>(), releaseAt = new Map<number, number[]>();
  for (const v of order) {
    startsAt.set(first.get(v)!, [...(startsAt.get(first.get(v)!) ?? []), v]);
    releaseAt.set(last.get(v)!, [...(releaseAt.get(last.get(v)!) ?? []), v]);
  }
  const buffers: (B & { id: number })[] = [];
  const free = new Map<string, number[]>();
  const map = new Map<number, number>();
  for (let i = 0; i < steps; i++) {
    for (const v of startsAt.get(i) ?? []) {
      const pool = free.get(vbufs[v]!.key) ?? [];
      let id = pool.pop();
      if (id === undefined) {
        id = buffers.length;
        buffers.push({ ...vbufs[v]!, id });
      }
      map.set(v, id);
    }
    for (const v of releaseAt.get(i) ?? []) {
      const k = vbufs[v]!.key;
      free.set(k, [...(free.get(k) ?? []), map.get(v)!]);
    }
  }
  return { buffers, map };
}

/** A step argument naming an activation buffer (virtual before planning, physical after). */
export interface BufArg {
  kind: 'buf';
  id: number;
}
const isBuf = (a: { kind: string }): a is BufArg => a.kind === 'buf';
/** An argument derived from another one (`of`: e.g. a CUDA tensor map over a buffer) touches that one. */
type StepArg = { kind: string; of?: StepArg };

/** The buffer ids among a step's arguments: what it touches, for planBuffers. */
export const bufArgIds = (args: readonly StepArg[]): number[] => args.flatMap((a) => (isBuf(a) ? [a.id] : a.of ? bufArgIds([a.of]) : []));

/** A step's arguments with each buffer's virtual id replaced by its physical one. */
export const remapBufArgs = <A extends StepArg>(args: readonly A[], map: ReadonlyMap<number, number>): A[] =>
  args.map((a) => (isBuf(a) ? ({ kind: 'buf', id: map.get(a.id)! } as BufArg as unknown as A) : a.of ? { ...a, of: remapBufArgs([a.of], map)[0] } : a));
