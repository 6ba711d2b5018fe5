// A pass is a pure Graph → Graph function with a name; pipelines are plain ordered lists of them.
import type { Graph } from '../src/ir/types.js';

export interface Pass<Options = void> {
  readonly name: string;
  run(graph: Graph, options: Options): Graph;
}
