// A large training state that is a pure function of its step, for the kill-mid-save test (big enough
// that a kill often lands inside a save: 4 MiB of weights, 8 MiB of moments). The random values are
// drawn once per process; each step's state is a copy with the step written into its first elements.
import { randomFrom, rng } from '../helpers/random.js';
import type { TrainState } from '../../src/train/train-state.js';

const N = 1 << 20;
let base: Float32Array[] | undefined;

export function stateForStep(step: number): TrainState {
  base ??= [randomFrom(N, rng(1), 1), randomFrom(N, rng(2), 0.1), randomFrom(N, rng(3), 0.01)];
  const [w, m, v] = base.map((a) => {
    const c = a.slice();
    c[0] = step;
    return c;
  });
  return {
    step,
    weights: new Map([['w', w!]]),
    optimizer: { step, m: new Map([['w', m!]]), v: new Map([['w', v!]]) },
    sampler: { position: step },
    rng: { s: step },
    options: {},
  };
}
