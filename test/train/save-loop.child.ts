// Child process for train-state.test.ts: saves checkpoints of steps 1, 2, 3… into argv[2] until it is
// killed, printing "saved N" after each. Each step's state is a pure function of N (statesForStep).
import { saveTrainState } from '../../src/train/train-state.js';
import { stateForStep } from './train-state-sample.js';

const dir = process.argv[2]!;
for (let step = 1; step < 1000; step++) {
  await saveTrainState(dir, stateForStep(step), { keep: 2 });
  process.stdout.write(`saved ${step}\n`);
}
