// Error-text helpers: names from files are escaped and bounded; describe never recurses over the
// value's own depth; duplicate JSON keys are found in any object, whatever the nesting or escaping.
import test from 'ava';
import { describe, nameText, oneLine, quote } from '../../src/util/errors.js';
import { firstDuplicateKey } from '../../src/util/json-duplicates.js';

test('quote escapes quotes, backslashes, control characters, separators and lone surrogates', (t) => {
  t.is(quote('a"b\\c'), '"a\\"b\\\\c"');
  t.is(quote('x\ny\r\tz\u0000\u001b[31m\u007f\u0085'), '"x\\ny\\r\\tz\\u0000\\u001b[31m\\u007f\\u0085"');
  t.is(quote('\u2028\ud800é🦙'), '"\\u2028\\ud800é🦙"');
  t.is(quote('abcdef', 3), '"abc…"');
});

test('nameText leaves plain names bare and quotes the rest', (t) => {
  t.is(nameText('model.layers.0.mlp.up_proj.weight'), 'model.layers.0.mlp.up_proj.weight');
  t.is(nameText('blk.0.ffn_up.weight'), 'blk.0.ffn_up.weight');
  t.is(nameText(''), '""');
  t.is(nameText('a b'), '"a b"');
  t.is(nameText('a\nmocc: fake'), '"a\\nmocc: fake"');
  t.is(nameText('x'.repeat(81)), `"${'x'.repeat(80)}…"`);
});

test('oneLine makes a message one line', (t) => {
  t.is(oneLine('Unexpected token \'x\', "{"a":\n x}" is not valid JSON'), 'Unexpected token \'x\', "{"a":\\n x}" is not valid JSON');
});

test('describe renders small values like JSON and cuts deep or long ones', (t) => {
  t.is(describe(null), 'null');
  t.is(describe([16, 64]), '[16,64]');
  t.is(describe({ a: 'x', b: [1, true] }), '{"a":"x","b":[1,true]}');
  t.is(describe(12884901888n), '12884901888');
  t.is(describe([[[[[1]]]]]), '[[[[…]]]]');
  t.is(describe(Array(1000).fill(1)), `[${Array(40).fill(1).join(',')}…`);
  let deep: unknown = 1;
  for (let i = 0; i < 200_000; i++) deep = [deep];
  t.is(describe(deep), '[[[[…]]]]');
  t.throws(() => JSON.stringify(deep), { instanceOf: RangeError }, 'the case describe exists for');
});

test('firstDuplicateKey finds a key given twice in one object, at any depth, escaped or not', (t) => {
  t.is(firstDuplicateKey('{"a":1,"b":2}'), undefined);
  t.is(firstDuplicateKey('{"a":1,"a":2}'), 'a');
  t.is(firstDuplicateKey('{"a":1,"\\u0061":2}'), 'a');
  t.is(firstDuplicateKey('{"x":{"a":1},"y":{"a":2}}'), undefined, 'same key in two objects');
  t.is(firstDuplicateKey('{"x":[{"a":1,"b":{"c":0,"c":1}}]}'), 'c');
  t.is(firstDuplicateKey('{"x":["a","a"],"s":"{\\"a\\":1,\\"a\\":2}"}'), undefined, 'strings that are values or inside strings');
  t.is(firstDuplicateKey('[{"a":1},{"a":1}]'), undefined);
  t.is(firstDuplicateKey(' { "k" : 1 , "k" : 2 } '), 'k');
  const deep = '['.repeat(100_000) + '{"a":1,"a":2}' + ']'.repeat(100_000);
  t.is(firstDuplicateKey(deep), 'a');
});
