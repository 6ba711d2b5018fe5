// The WGSL lowering of stories260K, dense and MoC, for both kernel variants: the dispatch list and
// every kernel's text are deterministic and snapshot-tested (a changed kernel shows up in review),
// and the structure the runtime relies on holds.
import test from 'ava';
import { loadModel } from '../../driver/load.js';
import { lowerToWgsl } from '../../targets/wgsl/lower.js';
import { CHECKPOINTS } from '../helpers/fixtures.js';

for (const [label, selection] of [['dense', 'dense'], ['MoC K=32', { k: 32 }]] as const) {
  for (const variant of ['cpu', 'gpu'] as const) {
    test(`${label}, ${variant} kernels: the lowered program is deterministic and matches its snapshot`, (t) => {
      const m = loadModel(CHECKPOINTS.gguf, { selection });
      try {
        const p = lowerToWgsl(m.graph, m.spec, { variant });
        const again = lowerToWgsl(m.graph, m.spec, { variant });
        t.deepEqual(JSON.stringify(again), JSON.stringify(p));
        // every dispatch names a kernel with as many bindings as it has arguments
        for (const s of p.steps) t.is(p.kernels[s.kernel]?.bindings.length, s.args.length, s.node);
        const perLayer = p.steps.filter((s) => s.node.includes('l0_') || s.node.includes('.0.')).length;
        t.snapshot({ dispatches: p.steps.map((s) => `${s.node}: ${s.kernel} [${s.grid.join(',')}]`), buffers: p.buffers.length, perLayer });
        t.snapshot(Object.fromEntries(Object.entries(p.kernels).map(([k, v]) => [k, v.code])));
      } finally {
        m.close();
      }
    });
  }
}

test('weights bigger than the storage-binding limit are bound in 256-byte-aligned row ranges', (t) => {
  const m = loadModel(CHECKPOINTS.gguf, { selection: 'dense' });
  try {
    // stories260K's token table is 512 × 64 f32 (128 KiB) and each W_down 64 × 172 (rows padded to 176: 44 KiB)
    const limit = 40 * 1024;
    const p = lowerToWgsl(m.graph, m.spec, { variant: 'cpu', maxBindingBytes: limit });
    const ranged = p.steps.flatMap((s) => s.args.flatMap((a) => (a.kind === 'weight' && a.rowStart !== undefined ? [{ node: s.node, a }] : [])));
    const rowBytes = (name: string) => 4 * Math.ceil(p.weights.find((w) => w.name === name)!.cols / 8) * 8;
    // the tied token table, read by the embedding and by the logits GEMV
    t.deepEqual([...new Set(ranged.filter((r) => r.a.name === 'tok_embeddings').map((r) => r.node))], ['x', 'logits']);
    t.true(ranged.some((r) => r.a.name.includes('w_down')), 'W_down is split');
    for (const { a } of ranged) {
      t.is((a.rowStart! * rowBytes(a.name)) % 256, 0, `${a.name} range at row ${a.rowStart}`);
      t.true(a.rows! * rowBytes(a.name) <= limit);
    }
  } finally {
    m.close();
  }
});
