// The IR text form round-trips, and the verifier rejects malformed graphs with a message that says why.
import test from 'ava';
import { buildLlamaGraph } from '../../src/import/llama-graph.js';
import type { ModelSpec } from '../../src/import/spec.js';
import { parseGraph, ParseError } from '../../src/ir/parse.js';
import { printGraph } from '../../src/ir/print.js';
import { verifyGraph, VerifyError } from '../../src/ir/verify.js';
import { swigluToMoc } from '../../passes/swiglu-to-moc.js';

const SPEC: ModelSpec = {
  arch: 'llama', dim: 64, nLayers: 2, nHeads: 8, nKvHeads: 4, headDim: 8, dFfn: 172, vocabSize: 512, normEps: 1e-5, maxSeqLen: 512,
  rope: { theta: 500000, style: 'half', scaling: { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } },
  tiedEmbeddings: false, bosId: 1, eosId: 2,
};

test('dense and MoC LLaMA graphs print, parse back and print identically', (t) => {
  const dense = buildLlamaGraph(SPEC, (n) => (n.includes('norm') ? 'f32' : 'bf16'));
  verifyGraph(dense);
  for (const g of [dense, swigluToMoc.run(dense, { k: [32, 64] }), swigluToMoc.run(dense, { pattern: { a: 2, b: 8 } })]) {
    const text = printGraph(g);
    const back = parseGraph(text);
    verifyGraph(back);
    t.deepEqual(back, g);
    t.is(printGraph(back), text);
  }
});

test('checkpoint annotations and float attributes survive the round trip', (t) => {
  const text = `graph a
  input %x : f32[T,4]
  param @w : f32[4]
  %y = rmsnorm(%x, @w) {eps=0.000001} : f32[T,4] [ckpt=recompute]
  output %y
end
`;
  const g = parseGraph(text);
  t.is(g.nodes[0]!.ckpt, 'recompute');
  t.is(g.nodes[0]!.attrs.eps, 1e-6);
  t.deepEqual(parseGraph(printGraph(g)), g);
});

const bad = (body: string) => `graph bad
  input %x : f32[T,4]
  param @w : f32[6,4]
${body}
end
`;

test('the verifier names what is wrong', (t) => {
  const cases: [string, RegExp][] = [
    [`  %y = linear(%x, @w) : f32[T,5]\n  output %y`, /declared f32\[T,5\] but the op gives f32\[T,6\]/],
    [`  %y = linear(%z, @w) : f32[T,6]\n  output %y`, /%z is used before it is defined/],
    [`  %y = frobnicate(%x) : f32[T,4]\n  output %y`, /unknown op 'frobnicate'/],
    [`  %y = rmsnorm(%x, @w) : f32[T,4]\n  output %y`, /missing attribute 'eps'|rmsnorm width/],
    [`  %y = linear(%x, @w) : f32[T,6]\n  %y = linear(%x, @w) : f32[T,6]\n  output %y`, /defined twice/],
    [`  %y = linear(%x, @w) : f32[T,6]\n  output %q`, /output %q is not defined/],
    [`  %y = moc_select(%x) {k=9} : i32[T,9]\n  output %y`, /k must be in 1\.\.4/],
    [`  %y = linear(%x, @w) {bias=true} : f32[T,6]\n  output %y`, /unknown attribute 'bias'/],
  ];
  for (const [body, msg] of cases) t.throws(() => verifyGraph(parseGraph(bad(body))), { instanceOf: VerifyError, message: msg }, body);
});

test('the parser reports the line it cannot read', (t) => {
  t.throws(() => parseGraph('graph g\n  input %x : f32[T,4]\n  this is not ir\nend\n'), { instanceOf: ParseError, message: /line 3/ });
  t.throws(() => parseGraph('graph g\n  input %x : f99[T]\nend\n'), { instanceOf: ParseError, message: /bad type/ });
  t.throws(() => parseGraph('graph g\n  input %x : f32[T]\n'), { instanceOf: ParseError, message: /missing 'end'/ });
});

test('checkpoint annotations are typed: anything but ckpt=save|recompute is an error naming the node', (t) => {
  const node = (ann: string) => `graph a\n  input %x : f32[T,4]\n  param @w : f32[4]\n  %y = rmsnorm(%x, @w) {eps=0.00001} : f32[T,4] [${ann}]\n  output %y\nend\n`;
  t.is(parseGraph(node('ckpt=save')).nodes[0]!.ckpt, 'save');
  t.throws(() => parseGraph(node('ckpt=sometimes')), { instanceOf: ParseError, message: /line 4 \(%y\): ckpt must be save or recompute, got 'sometimes'/ });
  t.throws(() => parseGraph(node('note=gcp')), { instanceOf: ParseError, message: /line 4 \(%y\): unknown annotation 'note'/ });
  const g = parseGraph(node('ckpt=save'));
  t.throws(() => verifyGraph({ ...g, nodes: [{ ...g.nodes[0]!, ckpt: 'maybe' as never }] }), { instanceOf: VerifyError, message: /%y = rmsnorm: ckpt must be save or recompute/ });
});

test('params are declared once, trainable unless {frozen}, and round-trip', (t) => {
  const text = `graph a
  input %x : f32[T,4]
  param @w : f32[4]
  param @n : f32[4] {frozen}
  %y = rmsnorm(%x, @w) {eps=0.00001} : f32[T,4]
  %z = rmsnorm(%y, @n) {eps=0.00001} : f32[T,4]
  output %z
end
`;
  const g = parseGraph(text);
  t.deepEqual(g.params.map((p) => [p.name, p.trainable]), [['w', true], ['n', false]]);
  t.is(printGraph(g), text);
  t.throws(() => verifyGraph({ ...g, params: [...g.params, g.params[0]!] }), { instanceOf: VerifyError, message: /param @w declared twice/ });
  t.throws(() => parseGraph(text.replace('{frozen}', '{sticky}')), { instanceOf: ParseError, message: /line 4: unknown param flag 'sticky'/ });
});

test('a node may define several typed outputs; the verifier checks each against the op', (t) => {
  const text = `graph a
  input %x : f32[T,12]
  %q, %k, %v = split(%x) {parts=3} : f32[T,4], f32[T,4], f32[T,4] [ckpt=save]
  %y = add(%q, %v) : f32[T,4]
  output %y
  output %k
end
`;
  const g = parseGraph(text);
  verifyGraph(g);
  t.deepEqual(g.nodes[0]!.outputs.map((o) => o.name), ['q', 'k', 'v']);
  t.is(printGraph(g), text);
  t.throws(() => verifyGraph(parseGraph(text.replace('f32[T,4], f32[T,4], f32[T,4]', 'f32[T,4], f32[T,5], f32[T,4]'))),
    { instanceOf: VerifyError, message: /declared f32\[T,5\] but the op gives f32\[T,4\] for %k/ });
  t.throws(() => verifyGraph(parseGraph(text.replace('%q, %k, %v = split(%x) {parts=3} : f32[T,4], f32[T,4], f32[T,4]', '%q, %k = split(%x) {parts=3} : f32[T,4], f32[T,4]'))),
    { instanceOf: VerifyError, message: /declares 2 outputs but the op gives 3/ });
  t.throws(() => parseGraph(text.replace(': f32[T,4], f32[T,4], f32[T,4]', ': f32[T,4], f32[T,4]')), { instanceOf: ParseError, message: /3 outputs but 2 types/ });
});
