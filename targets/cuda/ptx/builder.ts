// A small builder for PTX kernels: named registers declared on first use, unique labels, and the
// idioms every kernel repeats (parameters, global addresses, warp and block reductions).
// Generated text is deterministic: same spec, same text.

export type RegType = 'b16' | 'b32' | 'b64' | 'u32' | 'u64' | 's32' | 's64' | 'f32' | 'pred';
/** 'tmap': a 128-byte tensor map by value (`.param .align 64 .b8 name[128]`), for cp.async.bulk.tensor. */
export type ParamType = 'u64' | 'u32' | 's32' | 'f32' | 'tmap';

export interface Param {
  name: string;
  type: ParamType;
}

/** PTX spells a float immediate as its bits: 0f3F800000 is 1.0. */
export function f32Imm(v: number): string {
  const b = new DataView(new ArrayBuffer(4));
  b.setFloat32(0, v);
  return '0f' + b.getUint32(0).toString(16).toUpperCase().padStart(8, '0');
}

export class KernelBuilder {
  private readonly decls = new Map<string, RegType>();
  private readonly body: string[] = [];
  private readonly shared: string[] = [];
  private readonly moduleScope: string[] = [];
  private counter = 0;
  private synced = false;
  private maxThreads?: number;
  private minBlocks?: number;

  constructor(readonly name: string, readonly params: Param[]) {}

  /**
   * The point from which this kernel may read what earlier kernels wrote (or write anything).
   * With programmatic dependent launch (sm_90) a kernel can start while the previous one still
   * runs: `griddepcontrol.wait` blocks until all earlier kernels of the stream are complete and
   * their writes are visible; then `launch_dependents` lets the next kernel start early in turn.
   * Before this point a kernel may only touch read-only data (weights), e.g. prefetch them to L2.
   * A kernel that never calls this gets it as its first instruction. On sm_80 (no PDL) the module
   * writer removes these lines (see ptxModule); without PDL they are no-ops anyway.
   * Call it once on every path (a kernel with exclusive branches may call it once per branch).
   */
  gridSync(): void {
    this.synced = true;
    this.emit('griddepcontrol.wait', 'griddepcontrol.launch_dependents');
  }

  /**
   * Declares the block size the kernel is always launched with (.maxntid), so ptxas allocates
   * registers for that size rather than for the largest possible block. A launch with a larger
   * block fails (CUDA_ERROR_INVALID_VALUE), which also catches a lowering/generator mismatch.
   * `minBlocksPerSm` (.minnctapersm) sets the occupancy ptxas plans registers for: without it, a
   * 128-thread kernel is capped at 128 registers a thread (4 blocks an SM) and spills rather than
   * use more; 1 lets it use up to 255 (and is what setmaxnreg needs to act: registers capped at entry).
   */
  blockSize(threads: number, minBlocksPerSm?: number): void {
    this.maxThreads = threads;
    this.minBlocks = minBlocksPerSm;
  }

  /**
   * The kernel's dynamically sized shared memory (the launch's sharedBytes), as an .extern array
   * (PTX allows those only at module scope: it is written before the entry, named after the kernel
   * so kernels of one module do not collide); returns its name. Its alignment beyond 16 bytes is
   * not promised: align its address at run time where more is needed.
   */
  dynamicShared(): string {
    const name = `sh_${this.name}_dynamic`;
    this.moduleScope.push(`.extern .shared .align 16 .b8 ${name}[];`);
    return name;
  }

  /** The generic address of a tensor-map parameter (cvta.param, PTX 7.7), the form cp.async.bulk.tensor takes. */
  tmapParam(name: string): string {
    const p = this.reg('u64', name);
    this.emit(`mov.b64 ${p}, ${name}`, `cvta.param.u64 ${p}, ${p}`);
    return p;
  }

  /** Hints the L2 to fetch `bytes` (a multiple of 16, from a 16-byte-aligned global address). Hopper only. */
  prefetchL2(addr: string, bytes: number | string, guard?: string): void {
    if (typeof bytes === 'number' && (bytes % 16 !== 0 || bytes <= 0)) throw new Error(`PTX generator bug in ${this.name}: prefetch of ${bytes} bytes`);
    this.emit(`${guard ? `@${guard} ` : ''}cp.async.bulk.prefetch.L2.global [${addr}], ${bytes}`);
  }

  /** A fresh register named after `hint` (%hint_N). */
  reg(type: RegType, hint: string = type): string {
    const name = `%${hint}_${this.counter++}`;
    this.decls.set(name, type);
    return name;
  }

  regs(type: RegType, hint: string, n: number): string[] {
    return Array.from({ length: n }, () => this.reg(type, hint));
  }

  /** A register holding −v (PTX fma has no negated operand). */
  neg(v: string): string {
    const r = this.reg('f32', 'neg');
    this.emit(`neg.f32 ${r}, ${v}`);
    return r;
  }

  label(hint: string): string {
    return `$L_${hint}_${this.counter++}`;
  }

  /** Emits instruction lines (a trailing ';' is added where missing; labels end with ':'). */
  emit(...lines: string[]): void {
    for (const l of lines) {
      const t = l.trim();
      this.body.push(t.endsWith(':') || t.endsWith(';') || t.startsWith('//') || t.endsWith('{') || t === '}' ? `\t${t}` : `\t${t};`);
    }
  }

  place(label: string): void {
    this.body.push(`${label}:`);
  }

  comment(text: string): void {
    // ptxas rejects any non-ASCII character, comments included
    if (/[^\x20-\x7e]/.test(text)) throw new Error(`PTX generator bug in ${this.name}: non-ASCII comment ${JSON.stringify(text)}`);
    this.body.push(`\t// ${text}`);
  }

  /** Declares a shared array and returns its name (use with mov.u64 / cvta or [name+off]). */
  sharedArray(hint: string, type: 'b32' | 'f32' | 'u32' | 'b8', count: number, align = 16): string {
    const name = `sh_${hint}_${this.counter++}`;
    this.shared.push(`\t.shared .align ${align} .${type} ${name}[${count}];`);
    return name;
  }

  /** Loads a .u64 pointer parameter as a global address. */
  ptrParam(name: string): string {
    const p = this.reg('u64', name);
    this.emit(`ld.param.u64 ${p}, [${name}]`, `cvta.to.global.u64 ${p}, ${p}`);
    return p;
  }

  u32Param(name: string): string {
    const r = this.reg('u32', name);
    this.emit(`ld.param.u32 ${r}, [${name}]`);
    return r;
  }

  f32Param(name: string): string {
    const r = this.reg('f32', name);
    this.emit(`ld.param.f32 ${r}, [${name}]`);
    return r;
  }

  special(which: '%tid.x' | '%ctaid.x' | '%ctaid.y' | '%ctaid.z' | '%ntid.x', hint: string): string {
    const r = this.reg('u32', hint);
    this.emit(`mov.u32 ${r}, ${which}`);
    return r;
  }

  /** base + index·scale (bytes), with index a u32 register or an immediate. */
  addr(base: string, index: string | number, scale: number): string {
    const a = this.reg('u64', 'a');
    if (typeof index === 'number') {
      this.emit(`add.s64 ${a}, ${base}, ${index * scale}`);
    } else {
      const off = this.reg('u64', 'off');
      this.emit(`mul.wide.u32 ${off}, ${index}, ${scale}`, `add.s64 ${a}, ${base}, ${off}`);
    }
    return a;
  }

  /** Sums `v` across the 32 lanes of a warp (every lane gets the total). */
  warpSum(v: string): void {
    const t = this.reg('f32', 'sh');
    for (const off of [16, 8, 4, 2, 1]) this.emit(`shfl.sync.bfly.b32 ${t}, ${v}, ${off}, 31, -1`, `add.f32 ${v}, ${v}, ${t}`);
  }

  warpMax(v: string): void {
    const t = this.reg('f32', 'sh');
    for (const off of [16, 8, 4, 2, 1]) this.emit(`shfl.sync.bfly.b32 ${t}, ${v}, ${off}, 31, -1`, `max.f32 ${v}, ${v}, ${t}`);
  }

  /**
   * Sums `v` over the whole block of `threads` threads (a multiple of 32); every thread gets the
   * total in `v`. Uses a shared array of one float per warp.
   */
  blockSum(v: string, tid: string, threads: number): void {
    this.warpSum(v);
    const warps = threads / 32;
    if (warps === 1) return;
    const sh = this.sharedArray('red', 'f32', warps, 4);
    const lane = this.reg('u32', 'lane');
    const warp = this.reg('u32', 'warp');
    const p = this.reg('pred', 'p');
    const a = this.reg('u32', 'sa');
    this.emit(`and.b32 ${lane}, ${tid}, 31`, `shr.u32 ${warp}, ${tid}, 5`, `setp.eq.u32 ${p}, ${lane}, 0`);
    this.emit(`mov.u32 ${a}, ${sh}`, `mad.lo.u32 ${a}, ${warp}, 4, ${a}`, `@${p} st.shared.f32 [${a}], ${v}`, 'bar.sync 0');
    // Every warp reads all partial sums and adds them (warps is at most 32).
    const w = this.reg('f32', 'w');
    this.emit(`mov.f32 ${v}, 0f00000000`);
    for (let i = 0; i < warps; i++) this.emit(`ld.shared.f32 ${w}, [${sh}+${i * 4}]`, `add.f32 ${v}, ${v}, ${w}`);
    this.emit('bar.sync 0');
  }

  /**
   * Block-wide exclusive prefix sum of the u32 `v` over `threads` threads (a multiple of 32):
   * returns [exclusive, total]; every thread gets both. Ends with a barrier.
   */
  blockScan(v: string, tid: string, threads: number): [string, string] {
    const warps = threads / 32;
    const lane = this.reg('u32', 'lane'), warp = this.reg('u32', 'warp');
    this.emit(`and.b32 ${lane}, ${tid}, 31`, `shr.u32 ${warp}, ${tid}, 5`);
    const inc = this.reg('u32', 'inc'), t = this.reg('u32', 't'), p = this.reg('pred', 'p');
    this.emit(`mov.u32 ${inc}, ${v}`);
    for (const off of [1, 2, 4, 8, 16]) this.emit(`shfl.sync.up.b32 ${t}|${p}, ${inc}, ${off}, 0, -1`, `@${p} add.u32 ${inc}, ${inc}, ${t}`);
    const sh = this.sharedArray('scan', 'u32', warps, 4);
    const a = this.reg('u32', 'sa'), last = this.reg('pred', 'last');
    this.emit(`setp.eq.u32 ${last}, ${lane}, 31`, `mov.u32 ${a}, ${sh}`, `mad.lo.u32 ${a}, ${warp}, 4, ${a}`, `@${last} st.shared.u32 [${a}], ${inc}`, 'bar.sync 0');
    const before = this.reg('u32', 'before'), total = this.reg('u32', 'total'), wt = this.reg('u32', 'wt'), q = this.reg('pred', 'q');
    this.emit(`mov.u32 ${before}, 0`, `mov.u32 ${total}, 0`);
    for (let w = 0; w < warps; w++) this.emit(`ld.shared.u32 ${wt}, [${sh}+${w * 4}]`, `add.u32 ${total}, ${total}, ${wt}`, `setp.lt.u32 ${q}, ${w}, ${warp}`, `@${q} add.u32 ${before}, ${before}, ${wt}`);
    const excl = this.reg('u32', 'excl');
    this.emit(`add.u32 ${excl}, ${before}, ${inc}`, `sub.u32 ${excl}, ${excl}, ${v}`, 'bar.sync 0');
    return [excl, total];
  }

  /**
   * Rejects a register read before any instruction wrote it, in text order. This catches the easy
   * mistake of calling addr()/neg() inside an emit() whose earlier line defines their input: the
   * helper's instructions are emitted first, while the argument list is being built.
   */
  private checkDefinedBeforeUse(): void {
    const defined = new Set<string>();
    const regRe = /%[A-Za-z_][A-Za-z0-9_]*/g;
    for (const raw of this.body) {
      let line = raw.trim();
      if (line.endsWith(':') || line.startsWith('//')) continue;
      line = line.replace(/;$/, '');
      const reads: string[] = [];
      const guard = /^@!?(%[A-Za-z0-9_]+)\s+/.exec(line);
      if (guard) {
        reads.push(guard[1]!);
        line = line.slice(guard[0].length);
      }
      const sp = line.search(/\s/);
      const op = sp < 0 ? line : line.slice(0, sp);
      const rest = sp < 0 ? '' : line.slice(sp + 1);
      const noDest = /^(st\.|bra|bar\.(?!red)|ret|red\.|griddepcontrol|cp\.async|fence|membar)/.test(op);
      // the first operand (up to a top-level comma) is the destination, unless the op has none
      let depth = 0, cut = rest.length;
      for (let i = 0; i < rest.length; i++) {
        const ch = rest[i];
        if (ch === '{' || ch === '[') depth++;
        else if (ch === '}' || ch === ']') depth--;
        else if (ch === ',' && depth === 0) { cut = i; break; }
      }
      const dest = noDest ? '' : rest.slice(0, cut);
      const srcs = noDest ? rest : rest.slice(cut + 1);
      for (const r of srcs.match(regRe) ?? []) reads.push(r);
      for (const r of reads) {
        if (this.decls.has(r) && !defined.has(r)) throw new Error(`PTX generator bug in ${this.name}: ${r} is read before it is written: '${raw.trim()}'`);
      }
      for (const r of dest.match(regRe) ?? []) defined.add(r);
    }
  }

  render(): string {
    if (!this.synced) {
      this.synced = true;
      this.body.unshift('\tgriddepcontrol.wait;', '\tgriddepcontrol.launch_dependents;');
    }
    this.checkDefinedBeforeUse();
    const params = this.params.map((p) => (p.type === 'tmap' ? `\t.param .align 64 .b8 ${p.name}[128]` : `\t.param .${p.type} ${p.name}`)).join(',\n');
    const decls = [...this.decls].map(([n, t]) => `\t.reg .${t} ${n};`).join('\n');
    const bounds = (this.maxThreads ? `.maxntid ${this.maxThreads}, 1, 1\n` : '') + (this.minBlocks ? `.minnctapersm ${this.minBlocks}\n` : '');
    const before = this.moduleScope.map((l) => `${l}\n`).join('');
    return `${before}.visible .entry ${this.name}(\n${params}\n)\n${bounds}{\n${decls}\n${this.shared.join('\n')}\n${this.body.join('\n')}\n\tret;\n}\n`;
  }

  /**
   * Inclusive scan of the u32 `v` across the 32 lanes of a warp, into a new register: 'up' sums
   * lanes 0..l (a prefix), 'down' sums lanes l..31 (a suffix). Every lane of the warp must run it.
   */
  warpScan(v: string, dir: 'up' | 'down'): string {
    const s = this.reg('u32', 'scan'), t = this.reg('u32', 't'), p = this.reg('pred', 'p');
    this.emit(`mov.u32 ${s}, ${v}`);
    const clamp = dir === 'up' ? 0 : 31;
    for (const off of [1, 2, 4, 8, 16]) this.emit(`shfl.sync.${dir}.b32 ${t}|${p}, ${s}, ${off}, ${clamp}, -1`, `@${p} add.u32 ${s}, ${s}, ${t}`);
    return s;
  }

  /**
   * Block-wide exclusive prefix sum of the u32 `v` over `threads` threads (a multiple of 32, at
   * most 1024): returns [exclusive, total]; every thread gets both. Unlike blockScan, no thread
   * loops over the warps (each lane reads one warp total and the warp scans them with shuffles),
   * and there is one barrier and no trailing one: the shared array is this call's own.
   */
  blockScanShfl(v: string, tid: string, threads: number): [string, string] {
    const warps = threads / 32;
    if (!Number.isInteger(warps) || warps < 1 || warps > 32) throw new Error(`PTX generator bug in ${this.name}: blockScanShfl over ${threads} threads`);
    const inc = this.warpScan(v, 'up');
    const excl = this.reg('u32', 'excl'), total = this.reg('u32', 'total');
    if (warps === 1) {
      this.emit(`sub.u32 ${excl}, ${inc}, ${v}`, `shfl.sync.idx.b32 ${total}, ${inc}, 31, 31, -1`);
      return [excl, total];
    }
    const lane = this.reg('u32', 'lane'), warp = this.reg('u32', 'warp'), last = this.reg('pred', 'last'), a = this.reg('u32', 'sa');
    const sh = this.sharedArray('scan', 'u32', warps, 4);
    this.emit(`and.b32 ${lane}, ${tid}, 31`, `shr.u32 ${warp}, ${tid}, 5`, `setp.eq.u32 ${last}, ${lane}, 31`);
    this.emit(`mov.u32 ${a}, ${sh}`, `mad.lo.u32 ${a}, ${warp}, 4, ${a}`, `@${last} st.shared.u32 [${a}], ${inc}`, 'bar.sync 0');
    // lane w reads warp w's total; after the scan, winc - wt in lane w sums the warps before w
    const wt = this.reg('u32', 'wt'), has = this.reg('pred', 'has'), b = this.reg('u32', 'sb');
    this.emit(`mov.u32 ${wt}, 0`, `setp.lt.u32 ${has}, ${lane}, ${warps}`, `mov.u32 ${b}, ${sh}`, `mad.lo.u32 ${b}, ${lane}, 4, ${b}`, `@${has} ld.shared.u32 ${wt}, [${b}]`);
    const winc = this.warpScan(wt, 'up');
    const wexcl = this.reg('u32', 'wexcl'), before = this.reg('u32', 'before');
    this.emit(`sub.u32 ${wexcl}, ${winc}, ${wt}`, `shfl.sync.idx.b32 ${before}, ${wexcl}, ${warp}, 31, -1`, `shfl.sync.idx.b32 ${total}, ${winc}, 31, 31, -1`);
    this.emit(`add.u32 ${excl}, ${before}, ${inc}`, `sub.u32 ${excl}, ${excl}, ${v}`);
    return [excl, total];
  }

  /**
   * The lane where `p` holds (the highest such lane if several), the same in every lane of the
   * warp; 0xFFFFFFFF where `p` holds in no lane. Every lane of the warp must run it.
   */
  ballotLane(p: string): string {
    const bal = this.reg('b32', 'bal'), l = this.reg('u32', 'wl');
    this.emit(`vote.sync.ballot.b32 ${bal}, ${p}, -1`, `bfind.u32 ${l}, ${bal}`);
    return l;
  }
}

export const CUDA_ARCHES = ['sm_80', 'sm_90'] as const;
export type CudaArch = (typeof CUDA_ARCHES)[number];

/** The arch a module is written for on a device of compute capability [major, minor]. */
export function archFor(cc: readonly [number, number]): CudaArch {
  return cc[0] >= 9 ? 'sm_90' : 'sm_80';
}

// Lines only Hopper understands: grid-dependency control (programmatic dependent launch) and the
// bulk L2 prefetch. For sm_80 they are dropped, which changes nothing there: without programmatic
// launch every kernel starts after the previous one ends, and a prefetch is only a hint.
const HOPPER_ONLY = /^\t(?:@!?%\w+ )?(?:griddepcontrol\.|cp\.async\.bulk\.prefetch\.)[^\n]*\n/gm;

/**
 * The module text around kernels: PTX 7.8 for sm_80 (runs on Ampere and, JIT-compiled, on
 * Hopper), PTX 8.0 for sm_90 with programmatic-launch synchronization and L2 prefetches kept.
 * 'sm_90a' is sm_90 plus the arch-specific instructions (wgmma, setmaxnreg): such a module loads
 * only on compute capability 9.0 exactly, so it is a per-kernel choice, not a --arch value.
 */
export function ptxModule(kernels: string[], target: CudaArch | 'sm_90a' = 'sm_80'): string {
  const body = target === 'sm_80' ? kernels.map((k) => k.replace(HOPPER_ONLY, '')) : kernels;
  const version = target === 'sm_80' ? '7.8' : '8.0';
  return `// Generated by mocc. Do not edit: regenerate with \`mocc compile\`.\n.version ${version}\n.target ${target}\n.address_size 64\n\n${body.join('\n')}`;
}
