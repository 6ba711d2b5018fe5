// kv-cache: before/after IR text, written out by hand (one pass, one text test): the model graph's
// pure attention over whole sequences becomes explicit KV-cache state of the decode graph.
import test from 'ava';
import { parseGraph } from '../../src/ir/parse.js';
import { printGraph } from '../../src/ir/print.js';
import { verifyGraph } from '../../src/ir/verify.js';
import { kvCache } from '../../passes/kv-cache.js';

const BEFORE = `graph block
  input %tokens : i32[T]
  input %pos : i32[T]
  input %seq : i32[T]
  param @emb : f32[16,8]
  param @wq : f32[8,8]
  param @wk : f32[4,8]
  param @wv : f32[4,8]
  %x = embedding(@emb, %tokens) : f32[T,8]
  %l0.q_proj = linear(%x, @wq) : f32[T,8]
  %l0.q = rope(%l0.q_proj, %pos) {head_dim=4, heads=2, style="half", theta=10000} : f32[T,8]
  %l0.k_proj = linear(%x, @wk) : f32[T,4]
  %l0.k = rope(%l0.k_proj, %pos) {head_dim=4, heads=1, style="half", theta=10000} : f32[T,4]
  %l0.v = linear(%x, @wv) : f32[T,4]
  %l0.attn = attention(%l0.q, %l0.k, %l0.v, %seq) {head_dim=4, heads=2, kv_heads=1} : f32[T,8]
  %y = add(%x, %l0.attn) : f32[T,8]
  output %y
end
`;

const AFTER = `graph block
  input %tokens : i32[T]
  input %pos : i32[T]
  state %l0.k_cache : f32[32,4] next %l0.k_all
  state %l0.v_cache : f32[32,4] next %l0.v_all
  param @emb : f32[16,8]
  param @wq : f32[8,8]
  param @wk : f32[4,8]
  param @wv : f32[4,8]
  %x = embedding(@emb, %tokens) : f32[T,8]
  %l0.q_proj = linear(%x, @wq) : f32[T,8]
  %l0.q = rope(%l0.q_proj, %pos) {head_dim=4, heads=2, style="half", theta=10000} : f32[T,8]
  %l0.k_proj = linear(%x, @wk) : f32[T,4]
  %l0.k = rope(%l0.k_proj, %pos) {head_dim=4, heads=1, style="half", theta=10000} : f32[T,4]
  %l0.v = linear(%x, @wv) : f32[T,4]
  %l0.k_all = kv_write(%l0.k_cache, %l0.k, %pos) : f32[32,4]
  %l0.v_all = kv_write(%l0.v_cache, %l0.v, %pos) : f32[32,4]
  %l0.attn = kv_attention(%l0.q, %l0.k_all, %l0.v_all, %pos) {head_dim=4, heads=2, kv_heads=1} : f32[T,8]
  %y = add(%x, %l0.attn) : f32[T,8]
  output %y
end
`;

test('turns attention over sequences into kv_write + kv_attention over explicit cache state', (t) => {
  const g = parseGraph(BEFORE);
  verifyGraph(g);
  const d = kvCache.run(g, { capacity: 32 });
  verifyGraph(d);
  t.is(printGraph(d), AFTER);
  t.deepEqual(parseGraph(AFTER), d, 'the decode graph round-trips through the text form');
});

test('a graph that already has state is refused, and so is another reader of %seq', (t) => {
  t.throws(() => kvCache.run(parseGraph(AFTER), { capacity: 32 }), { message: /already has state/ });
  const bad = BEFORE.replace('  %y = add(%x, %l0.attn) : f32[T,8]', '  %s = embedding(@emb, %seq) : f32[T,8]\n  %y = add(%s, %l0.attn) : f32[T,8]');
  t.throws(() => kvCache.run(parseGraph(bad), { capacity: 32 }), { message: /%s = embedding reads %seq; only attention may/ });
});

test('the verifier checks a state against its next value', (t) => {
  t.throws(() => verifyGraph(parseGraph(AFTER.replace('next %l0.k_all', 'next %l0.q'))), { message: /state %l0.k_cache is f32\[32,4\] but its next value %l0.q is f32\[T,8\]/ });
  t.throws(() => verifyGraph(parseGraph(AFTER.replace('next %l0.k_all', 'next %nope'))), { message: /next value %nope is not defined/ });
});
