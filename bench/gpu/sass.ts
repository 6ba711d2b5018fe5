// Writes the sm_90 PTX of the FFN kernels (as ffn-decode runs them) to a folder, for a look at the
// SASS on the GPU machine: are the weight loads all issued before the first FMA waits on them?
//   node dist/bench/gpu/sass.js DIR && for f in DIR/*.ptx; do ptxas -arch=sm_90 $f -o ${f%.ptx}.cubin; cuobjdump -sass ${f%.ptx}.cubin; done
import { mkdirSync, writeFileSync } from 'node:fs';
import * as D from '../../targets/cuda/ptx/dense.js';
import * as M from '../../targets/cuda/ptx/moc.js';
import { ptxModule } from '../../targets/cuda/ptx/builder.js';

const dir = process.argv[2] ?? 'sass';
mkdirSync(dir, { recursive: true });
const norm = { dtype: 'f32' as const, eps: 1e-5 };
const kernels = [
  D.gemv({ dtype: 'bf16', inDim: 2048, outDim: 5464, epilogue: 'store', norm }),
  D.gemv({ dtype: 'bf16', inDim: 2048, outDim: 5464, epilogue: 'store', prefetchBytes: 0 }),
  M.mocUpDown({ dtype: 'bf16', d: 2048, f: 5464, kKeep: 1024, norm }),
];
for (const k of kernels) writeFileSync(`${dir}/${k.name}.ptx`, ptxModule([k.text], 'sm_90'));
console.log(kernels.map((k) => k.name).join('\n'));
