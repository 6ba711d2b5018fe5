// freeze: which params train. `all` (every param), `ffn` (the FFN weights: gate, up, down — found by
// structure as the memory plan finds the FFN), or a glob over param names (`*` any run of
// characters, `?` one; several globs separated by commas). The others become {frozen}: autodiff gives
// them no gradient and the optimizer keeps no state for them.
import type { Graph } from '../src/ir/types.js';
import { UserError } from '../src/util/errors.js';
import { nodeCategories } from './memory-plan.js';
import type { Pass } from './pass.js';

function globRegex(globs: string): RegExp {
  const parts = globs.split(',').map((g) => g.trim()).filter(Boolean);
  const one = (g: string) => g.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^(?:${parts.map(one).join('|')})$`);
}

/** The names of the params `spec` selects, in declaration order. */
export function selectTrainable(g: Graph, spec: string): string[] {
  if (spec === 'all') return g.params.map((p) => p.name);
  if (spec === 'ffn') {
    const cats = nodeCategories(g, new Set(g.nodes));
    const ffn = new Set(g.nodes.filter((n) => cats.get(n) === 'ffn').flatMap((n) => n.inputs.filter((o) => o.kind === 'param').map((o) => o.name)));
    return g.params.filter((p) => ffn.has(p.name)).map((p) => p.name);
  }
  const re = globRegex(spec);
  return g.params.filter((p) => re.test(p.name)).map((p) => p.name);
}

export const freeze: Pass<string> = {
  name: 'freeze',
  run(g: Graph, spec: string): Graph {
    const keep = new Set(selectTrainable(g, spec));
    if (keep.size === 0) throw new UserError(`--trainable ${spec} selects no parameter (names look like ${g.params.slice(0, 3).map((p) => p.name).join(', ')}); use all, ffn or a glob such as 'layers.*.w_up'`);
    return { ...g, params: g.params.map((p) => ({ ...p, trainable: keep.has(p.name) })) };
  },
};
