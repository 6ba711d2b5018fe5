// Assembling generated PTX in tests: one module of the given kernels for one arch through ptxas -v
// (the CUDA toolkit's assembler; tests that call this are gated by ptxasRequirement), so its stderr
// holds the register and spill report.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ptxModule, type CudaArch } from '../../targets/cuda/ptx/builder.js';
import type { ExecutionContext } from 'ava';
import { findPtxas } from './requires.js';

/** ptxas -v's report of a kernel that uses no local memory (no stack frame, no spills). */
export const NO_LOCAL_MEMORY = /0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads/;

/** Assembles ptxModule(kernels, arch); returns ptxas's exit status and its stderr. */
export function assemblePtx(kernels: string[], arch: CudaArch | 'sm_90a'): { status: number | null; stderr: string } {
  const dir = mkdtempSync(join(tmpdir(), 'mocc-ptxas-'));
  try {
    const file = join(dir, `module_${arch}.ptx`);
    writeFileSync(file, ptxModule(kernels, arch));
    const r = spawnSync(findPtxas()!, [`-arch=${arch}`, '-v', file, '-o', '/dev/null'], { encoding: 'utf8' });
    return { status: r.status, stderr: r.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Asserts that every kernel assembles alone for sm_80 and sm_90 and uses no local memory (no stack
 * frame, no spills), each failure naming the kernel and the arch with ptxas's report.
 */
export function assertEachAssembles(t: ExecutionContext, kernels: Iterable<{ name: string; text: string }>): void {
  for (const k of kernels) {
    for (const arch of ['sm_80', 'sm_90'] as const) {
      const r = assemblePtx([k.text], arch);
      t.is(r.status, 0, `${k.name} ${arch}: ${r.stderr}`);
      t.regex(r.stderr, NO_LOCAL_MEMORY, `${k.name} ${arch}: ${r.stderr}`);
    }
  }
}
