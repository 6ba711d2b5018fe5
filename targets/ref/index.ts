// The `ref` target: plain TypeScript, float32, every op. The oracle for all other targets.
import { OPS } from '../../src/ir/ops.js';
import type { Target } from '../target.js';
import { RefSession } from './session.js';

export const refTarget: Target = {
  name: 'ref',
  description: 'plain-TypeScript interpreter in float32 (the reference every other target is checked against)',
  ops: new Set(OPS.keys()),
  createSession: (model) => new RefSession(model),
};
