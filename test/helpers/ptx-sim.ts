// A tiny interpreter of generated PTX, for checking a kernel's indexing, tails and barriers on a
// machine without a GPU. It knows only the instructions the kernels it is used on emit (an unknown
// one throws, so it never guesses), runs each CTA's threads one after another up to each bar.sync
// (a kernel whose threads all reach the same barriers in order), and rounds f32 arithmetic as the GPU does (fma.rn: one rounding of the exact a·b + c, which the
// float64 product and sum give exactly for f32 operands unless the sum needs more than 53 bits:
// then it rounds twice, a difference far below any test's tolerance). Global memory is one flat
// byte array; addresses are plain numbers.
// Warp-level operations (shfl.sync, vote.sync, redux.sync, bar.warp.sync; full mask only): each warp's
// lanes run one after another up to the operation, which then runs for all 32 lanes at once; every
// lane of the warp must reach the same one (with the same guard), else it throws, as it does for a
// partial warp. Atomics on shared memory need nothing special: threads run one at a time, so each
// read-modify-write is whole (any order of them is one the GPU may produce; kernels whose result
// depends on that order would show it as a difference between runs on the GPU only).
export interface SimBuffer {
  addr: number;
  bytes: number;
}

export class PtxSim {
  readonly mem: DataView;
  private top = 256;
  private readonly buffers: SimBuffer[] = [];
  /** The declared type of each register of the kernel being run (mov.b32 between f32 and integer registers moves bits). */
  private regTypes = new Map<string, string>();
  constructor(bytes: number) {
    this.mem = new DataView(new ArrayBuffer(bytes));
  }
  /** Allocates `bytes` (256-aligned, as cuMemAlloc) filled with the f32 `fill`. */
  alloc(bytes: number, fill = 0): SimBuffer {
    const addr = this.top;
    this.top += Math.ceil(Math.max(bytes, 4) / 256) * 256;
    if (this.top > this.mem.byteLength) throw new Error('PtxSim: out of memory');
    this.buffers.push({ addr, bytes });
    for (let o = 0; o < bytes; o += 4) this.mem.setFloat32(addr + o, fill, true);
    return { addr, bytes };
  }
  upload(data: Float32Array): SimBuffer {
    const b = this.alloc(data.byteLength);
    data.forEach((v, i) => this.mem.setFloat32(b.addr + 4 * i, v, true));
    return b;
  }
  /** Any typed array's bytes, as they are. */
  uploadBytes(data: ArrayBufferView): SimBuffer {
    const b = this.alloc(data.byteLength);
    new Uint8Array(this.mem.buffer, b.addr, data.byteLength).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    return b;
  }
  download(b: SimBuffer, count: number): Float32Array {
    return Float32Array.from({ length: count }, (_, i) => this.mem.getFloat32(b.addr + 4 * i, true));
  }

  /** Runs the one .entry in `ptx` over grid × block threads with params in declaration order. */
  launch(ptx: string, grid: [number, number, number], block: number, params: number[]): void {
    const entry = /\.entry\s+\w+\(([^)]*)\)/.exec(ptx);
    if (!entry) throw new Error('PtxSim: no .entry');
    const names = [...entry[1]!.matchAll(/\.param\s+\.\w+\s+(\w+)/g)].map((m) => m[1]!);
    const param = new Map(names.map((n, i) => [n, params[i]!]));
    const shared = new Map<string, number>();
    let sharedBytes = 0;
    // an array's size is its count of elements of its type (.b8: bytes; .f32, .b32, .u32: 4 bytes)
    for (const m of ptx.matchAll(/\.shared\s+\.align\s+(\d+)\s+\.([a-z]+)(\d+)\s+(\w+)\[(\d+)\]/g)) {
      sharedBytes = Math.ceil(sharedBytes / Number(m[1])) * Number(m[1]);
      shared.set(m[4]!, sharedBytes);
      sharedBytes += Number(m[5]) * (Number(m[3]) / 8);
    }
    const body = ptx.slice(ptx.indexOf('{', entry.index + entry[0].length) + 1);
    this.regTypes = new Map([...body.matchAll(/\.reg\s+\.(\w+)\s+(%\w+);/g)].map((m) => [m[2]!, m[1]!]));
    const lines = body.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('//') && !l.startsWith('.reg') && !l.startsWith('.shared') && l !== '}');
    const labels = new Map<string, number>();
    const code: string[] = [];
    for (const l of lines) {
      if (l.endsWith(':')) labels.set(l.slice(0, -1), code.length);
      else code.push(l.replace(/;$/, ''));
    }
    // the lines runToBarrier leaves to warpOp, found once here rather than at every step
    const warpOps = new Set(code.flatMap((l, i) => (WARP_OP.test(l) ? [i] : [])));
    for (let bz = 0; bz < grid[2]; bz++) for (let by = 0; by < grid[1]; by++) for (let bx = 0; bx < grid[0]; bx++) {
      const sm = new DataView(new ArrayBuffer(Math.max(4, sharedBytes)));
      const threads: SimThread[] = Array.from({ length: block }, (_, tid) => ({ pc: 0, done: false, atWarpOp: false, regs: new Map<string, number>([['%tid.x', tid], ['%ctaid.x', bx], ['%ctaid.y', by], ['%ctaid.z', bz], ['%ntid.x', block], ['%nctaid.x', grid[0]], ['%nctaid.y', grid[1]], ['%nctaid.z', grid[2]]]) }));
      const warps = Array.from({ length: Math.ceil(block / 32) }, (_, w) => threads.slice(32 * w, 32 * w + 32));
      while (threads.some((t) => !t.done)) {
        for (const warp of warps) {
          // the warp's lanes up to the next barrier (or exit), running each warp-level operation on the way
          for (;;) {
            for (const t of warp) if (!t.done) this.runToBarrier(t, code, warpOps, labels, param, shared, sm);
            const waiting = warp.filter((t) => t.atWarpOp).length;
            if (waiting === 0) break;
            if (waiting !== 32) throw new Error(`PtxSim: a warp-level operation reached by ${waiting} of the warp's ${warp.length} threads (${code[warp.find((t) => t.atWarpOp)!.pc]})`);
            this.warpOp(warp, code);
          }
        }
        if (threads.some((t) => t.done) && threads.some((t) => !t.done)) throw new Error('PtxSim: some threads exited while others wait at a barrier');
      }
    }
  }

  /**
   * Runs warp-level operation code[pc] for the 32 lanes of `warp`, all stopped at it (runToBarrier),
   * and moves them past it. PTX ISA semantics, full mask (membermask −1) only.
   */
  private warpOp(warp: SimThread[], code: string[]): void {
    const line = code[warp[0]!.pc]!;
    if (warp.some((t) => t.pc !== warp[0]!.pc)) throw new Error(`PtxSim: the warp's lanes are at different warp-level operations (${line})`);
    const guard = /^@(!?)(%\w+)\s+/.exec(line);
    const text = guard ? line.slice(guard[0].length) : line;
    const on = warp.map((t) => (guard ? Boolean(reg(t, guard[2]!)) !== (guard[1] === '!') : true));
    for (const t of warp) (t.pc++, (t.atWarpOp = false));
    if (on.every((x) => !x)) return;
    if (!on.every((x) => x)) throw new Error(`PtxSim: a warp-level operation guarded off in some lanes only (${line})`);
    const sp = text.indexOf(' ');
    const op = text.slice(0, sp);
    const ops = text.slice(sp + 1).split(',').map((x) => x.trim());
    if (ops[ops.length - 1] !== '-1') throw new Error(`PtxSim: only the full membermask is known (${line})`);
    const read = (s: string) => warp.map((t) => operand(t, s));
    if (op === 'bar.warp.sync') return;
    if (op.startsWith('shfl.sync.')) {
      // shfl.sync.mode.b32 d[|p], a, b, c, mask (PTX ISA, shfl.sync): c = clamp | segmask << 8; here segmask 0
      const [dst, a, b, c] = ops as [string, string, string, string];
      const [d, p] = dst.split('|') as [string, string | undefined];
      const mode = op.split('.')[2]!, av = read(a), bv = read(b), cv = read(c);
      warp.forEach((t, lane) => {
        if ((cv[lane]! >>> 8) & 31) throw new Error(`PtxSim: shfl with a segment mask (${line})`);
        const maxLane = mode === 'up' ? 0 : cv[lane]! & 31, bl = bv[lane]! & 31;
        const j = mode === 'up' ? lane - bl : mode === 'down' ? lane + bl : mode === 'bfly' ? lane ^ bl : bl;
        const ok = mode === 'up' ? j >= maxLane : j <= maxLane;
        t.regs.set(d, av[ok ? j : lane]!);
        if (p) t.regs.set(p, Number(ok));
      });
      return;
    }
    if (op === 'vote.sync.ballot.b32') {
      const pv = read(ops[1]!);
      const ballot = pv.reduce((m, v, lane) => (v ? m | (1 << lane) : m), 0) >>> 0;
      for (const t of warp) t.regs.set(ops[0]!, ballot);
      return;
    }
    if (op === 'redux.sync.add.u32' || op === 'redux.sync.min.u32' || op === 'redux.sync.max.u32') {
      const av = read(ops[1]!);
      const r = op.endsWith('add.u32') ? av.reduce((x, y) => (x + y) >>> 0, 0) : op.endsWith('min.u32') ? Math.min(...av) : Math.max(...av);
      for (const t of warp) t.regs.set(ops[0]!, r);
      return;
    }
    throw new Error(`PtxSim: unknown warp-level instruction ${op} (${line})`);
  }

  private runToBarrier(t: SimThread, code: string[], warpOps: ReadonlySet<number>, labels: Map<string, number>, param: Map<string, number>, shared: Map<string, number>, sm: DataView): void {
    const r = t.regs, g = this.mem;
    const val = (s: string): number => {
      if (s.startsWith('%')) {
        const v = r.get(s);
        if (v === undefined) throw new Error(`PtxSim: ${s} read before written`);
        return v;
      }
      if (/^0f[0-9A-Fa-f]{8}$/.test(s)) return new DataView(Uint32Array.of(parseInt(s.slice(2), 16)).buffer).getFloat32(0, true);
      if (shared.has(s)) return shared.get(s)!;
      if (/^-?\d+$/.test(s)) return Number(s);
      throw new Error(`PtxSim: operand ${s}`);
    };
    /** [reg+imm] or [param] → address. */
    const address = (s: string): number => {
      const m = /^\[([^+\]]+)(?:\+(-?\d+))?\]$/.exec(s)!;
      return (param.has(m[1]!) && !m[1]!.startsWith('%') ? param.get(m[1]!)! : val(m[1]!)) + Number(m[2] ?? 0);
    };
    const list = (s: string) => s.replace(/[{}]/g, '').split(',').map((x) => x.trim());
    for (let steps = 0; ; steps++) {
      if (steps > 1e7) throw new Error('PtxSim: runaway thread');
      const line = code[t.pc++];
      if (line === undefined || line === 'ret') return void (t.done = true);
      if (warpOps.has(t.pc - 1)) return void (t.pc--, (t.atWarpOp = true));
      let text = line;
      const guard = /^@(!?)(%\w+)\s+/.exec(text);
      if (guard) {
        text = text.slice(guard[0].length);
        if (Boolean(val(guard[2]!)) === (guard[1] === '!')) continue;
      }
      const sp = text.indexOf(' ');
      const op = sp < 0 ? text : text.slice(0, sp);
      const rest = sp < 0 ? '' : text.slice(sp + 1);
      // operands split on top-level commas ({a, b} and [x+1] stay whole)
      const ops: string[] = [];
      let depth = 0, cur = '';
      for (const ch of rest) {
        if (ch === '{' || ch === '[') depth++;
        if (ch === '}' || ch === ']') depth--;
        if (ch === ',' && depth === 0) (ops.push(cur.trim()), (cur = ''));
        else cur += ch;
      }
      if (cur.trim()) ops.push(cur.trim());
      const [d, a, b, c] = ops as [string, string, string, string];
      // u32 operands as u32 (an immediate such as -2147483648 is its two's-complement bits, as ptxas reads it)
      const u32 = (v: number) => v >>> 0;
      const f32 = Math.fround;
      const set = (reg: string, v: number) => r.set(reg, v);
      switch (op) {
        case 'griddepcontrol.wait': case 'griddepcontrol.launch_dependents': break;
        case 'bar.sync': return;
        case 'bra': case 'bra.uni': t.pc = labels.get(d)!; break;
        case 'ld.param.u64': case 'ld.param.u32': set(d, param.get(a.slice(1, -1))!); break;
        case 'cvta.to.global.u64': set(d, val(a)); break;
        case 'mov.u32': case 'mov.u64': case 'mov.f32': set(d, val(a)); break;
        case 'add.u32': set(d, u32(val(a) + val(b))); break;
        case 'add.s64': set(d, val(a) + val(b)); break;
        case 'sub.u32': set(d, u32(val(a) - val(b))); break;
        case 'and.b32': set(d, u32(val(a) & val(b))); break;
        case 'xor.b32': set(d, u32(val(a) ^ val(b))); break;
        case 'shl.b32': set(d, u32(val(a) << val(b))); break;
        case 'shr.u32': set(d, val(a) >>> val(b)); break;
        case 'mul.lo.u32': set(d, u32(Math.imul(val(a), val(b)))); break;
        case 'mad.lo.u32': set(d, u32(Math.imul(val(a), val(b)) + val(c))); break;
        case 'mul.wide.u32': set(d, val(a) * val(b)); break;
        case 'rem.u32': set(d, val(a) % val(b)); break;
        case 'div.u32': set(d, Math.floor(val(a) / val(b))); break;
        case 'setp.lt.u32': set(d, Number(u32(val(a)) < u32(val(b)))); break;
        case 'setp.ge.u32': set(d, Number(u32(val(a)) >= u32(val(b)))); break;
        case 'setp.lt.and.u32': set(d, Number(u32(val(a)) < u32(val(b)) && Boolean(val(c)))); break;
        case 'and.pred': set(d, Number(Boolean(val(a)) && Boolean(val(b)))); break;
        case 'xor.pred': set(d, Number(Boolean(val(a)) !== Boolean(val(b)))); break;
        case 'fma.rn.f32': set(d, f32(val(a) * val(b) + val(c))); break;
        case 'add.f32': set(d, f32(val(a) + val(b))); break;
        // Float arithmetic below: each is correctly rounded in PTX (.rn), and an f32 result of one
        // float64 operation on f32 operands rounded again to f32 is that correct rounding (double
        // rounding is innocuous for +, −, ×, ÷ and √ since 53 ≥ 2·24 + 2).
        case 'sub.f32': set(d, f32(val(a) - val(b))); break;
        case 'mul.f32': set(d, f32(val(a) * val(b))); break;
        case 'neg.f32': set(d, -val(a)); break;
        case 'div.rn.f32': set(d, f32(val(a) / val(b))); break;
        case 'rcp.rn.f32': set(d, f32(1 / val(a))); break;
        case 'sqrt.rn.f32': set(d, f32(Math.sqrt(val(a)))); break;
        // ex2.approx is an approximation (max relative error about 2^-22 per the PTX ISA); the sim
        // gives the correctly rounded 2^a, one of the values the GPU may return within that bound.
        case 'ex2.approx.f32': set(d, f32(2 ** val(a))); break;
        case 'min.u32': set(d, Math.min(u32(val(a)), u32(val(b)))); break;
        case 'max.u32': set(d, Math.max(u32(val(a)), u32(val(b)))); break;
        case 'or.b32': set(d, u32(val(a) | val(b))); break;
        case 'setp.eq.u32': set(d, Number(u32(val(a)) === u32(val(b)))); break;
        case 'setp.ne.u32': set(d, Number(u32(val(a)) !== u32(val(b)))); break;
        case 'setp.gt.u32': set(d, Number(u32(val(a)) > u32(val(b)))); break;
        case 'setp.le.u32': set(d, Number(u32(val(a)) <= u32(val(b)))); break;
        case 'or.pred': set(d, Number(Boolean(val(a)) || Boolean(val(b)))); break;
        case 'not.pred': set(d, Number(!val(a))); break;
        case 'selp.u32': set(d, val(c) ? val(a) : val(b)); break;
        case 'ld.global.nc.f32': set(d, g.getFloat32(this.check(address(a), 4), true)); break;
        case 'ld.global.nc.v2.f32': { const p = this.check(address(a), 8); list(d).forEach((x, i) => set(x, g.getFloat32(p + 4 * i, true))); break; }
        case 'ld.global.u32': set(d, g.getUint32(this.check(address(a), 4), true)); break;
        case 'st.global.u32': g.setUint32(this.check(address(d), 4), u32(val(a)), true); break;
        // ld.u16 into a 32-bit register zero-extends; st.u16 from one stores its low 16 bits (PTX ISA: ld, st)
        case 'ld.global.u16': set(d, g.getUint16(this.check(address(a), 2), true)); break;
        case 'st.global.u16': g.setUint16(this.check(address(d), 2), val(a) & 0xffff, true); break;
        case 'ld.shared.f32': set(d, sm.getFloat32(address(a), true)); break;
        case 'ld.shared.u32': set(d, sm.getUint32(address(a), true)); break;
        case 'st.shared.u32': sm.setUint32(address(d), u32(val(a)), true); break;
        case 'ld.global.f32': set(d, g.getFloat32(this.check(address(a), 4), true)); break;
        case 'st.global.f32': g.setFloat32(this.check(address(d), 4), val(a), true); break;
        case 'ld.global.v4.f32': { const p = this.check(address(a), 16); list(d).forEach((x, i) => set(x, g.getFloat32(p + 4 * i, true))); break; }
        case 'st.global.v4.f32': { const p = this.check(address(d), 16); list(a).forEach((x, i) => g.setFloat32(p + 4 * i, val(x), true)); break; }
        case 'st.shared.f32': sm.setFloat32(address(d), val(a), true); break;
        case 'ld.shared.v4.f32': { const p = address(a); if (p % 16) throw new Error(`PtxSim: misaligned ld.shared.v4 at ${p}`); list(d).forEach((x, i) => set(x, sm.getFloat32(p + 4 * i, true))); break; }
        // Added for the training kernels (targets/cuda/ptx/train-*.ts), per the PTX ISA:
        case 'ld.param.f32': set(d, param.get(a.slice(1, -1))!); break;
        case 'mov.b32': set(d, this.movBits(d, a, val(a))); break;
        case 'setp.lt.s32': set(d, Number((val(a) | 0) < (val(b) | 0))); break;
        case 'setp.ge.s32': set(d, Number((val(a) | 0) >= (val(b) | 0))); break;
        case 'setp.gt.f32': set(d, Number(val(a) > val(b))); break; // false on NaN (an ordered compare)
        case 'setp.lt.f32': set(d, Number(val(a) < val(b))); break;
        case 'selp.f32': set(d, Boolean(val(c)) ? val(a) : val(b)); break;
        case 'sub.rn.f32': set(d, f32(val(a) - val(b))); break;
        case 'add.rn.f32': set(d, f32(val(a) + val(b))); break;
        case 'mul.rn.f32': set(d, f32(val(a) * val(b))); break;
        case 'max.f32': set(d, Math.max(val(a), val(b))); break; // (PTX returns the non-NaN operand; the kernels here see no NaN)
        case 'cvt.rn.f32.u32': set(d, f32(val(a))); break;
        // The approximate transcendentals are computed exactly: tests' tolerances cover the GPU's
        // error (PTX ISA: ex2.approx and lg2.approx, relative error about 2^-22). ftz: a subnormal result is 0.
        case 'ex2.approx.ftz.f32': { const e = f32(2 ** val(a)); set(d, e < 2 ** -126 ? 0 : e); break; }
        case 'lg2.approx.f32': set(d, f32(Math.log2(val(a)))); break;
        case 'cvt.rn.bf16.f32': set(d, bf16Bits(val(a))); break;
        // d, a, b: a (the first source) goes in the upper half, b in the lower (PTX ISA, cvt with .bf16x2 / .f16x2)
        case 'cvt.rn.bf16x2.f32': set(d, ((bf16Bits(val(a)) << 16) | bf16Bits(val(b))) >>> 0); break;
        case 'cvt.rn.f16x2.f32': set(d, ((f16Bits(val(a)) << 16) | f16Bits(val(b))) >>> 0); break;
        case 'st.global.v4.b32': { const p = this.check(address(d), 16); list(a).forEach((x, i) => g.setUint32(p + 4 * i, val(x) >>> 0, true)); break; }
        case 'ld.global.s32': set(d, g.getInt32(this.check(address(a), 4), true)); break;
        case 'st.global.b16': g.setUint16(this.check(address(d), 2), val(a), true); break;
        // zero-extends the 16-bit source (here a .b16 register, compatible with .u16 per the PTX ISA's type rules)
        case 'cvt.u32.u16': set(d, val(a) & 0xffff); break;
        // Added for the radix Top-K (targets/cuda/ptx/moc.ts emitTopkSelect), per the PTX ISA:
        case 'not.b32': set(d, u32(~val(a))); break;
        case 'bfe.u32': { const pos = val(b) & 0xff, len = val(c) & 0xff; set(d, len === 0 || pos >= 32 ? 0 : u32(val(a) >>> pos) & (len >= 32 ? 0xffffffff : (2 ** len - 1))); break; }
        case 'bfind.u32': { const v = val(a); set(d, v === 0 ? 0xffffffff : 31 - Math.clz32(v)); break; }
        case 'red.shared.add.u32': { const p = address(d); sm.setUint32(p, u32(sm.getUint32(p, true) + val(a)), true); break; }
        case 'atom.shared.add.u32': { const p = address(a); set(d, sm.getUint32(p, true)); sm.setUint32(p, u32(sm.getUint32(p, true) + val(b)), true); break; }
        case 'ld.shared.v2.u32': { const p = address(a); if (p % 8) throw new Error(`PtxSim: misaligned ld.shared.v2 at ${p}`); list(d).forEach((x, i) => set(x, sm.getUint32(p + 4 * i, true))); break; }
        // 16 bits of a .b16 register into shared memory; the vector shared load moves 16 bytes as bits (PTX ISA: st, ld)
        case 'st.shared.b16': sm.setUint16(address(d), val(a) & 0xffff, true); break;
        case 'ld.shared.v4.u32': { const p = address(a); if (p % 16) throw new Error(`PtxSim: misaligned ld.shared.v4 at ${p}`); list(d).forEach((x, i) => set(x, sm.getUint32(p + 4 * i, true))); break; }
        case 'st.shared.v4.u32': { const p = address(d); if (p % 16) throw new Error(`PtxSim: misaligned st.shared.v4 at ${p}`); list(a).forEach((x, i) => sm.setUint32(p + 4 * i, u32(val(x)), true)); break; }
        // Added for the training rope's 4-pair threads (targets/cuda/ptx/train-elementwise.ts), per the PTX ISA:
        case 'ld.global.nc.v4.f32': { const p = this.check(address(a), 16); list(d).forEach((x, i) => set(x, g.getFloat32(p + 4 * i, true))); break; }
        case 'st.global.v2.b32': { const p = this.check(address(d), 8); list(a).forEach((x, i) => g.setUint32(p + 4 * i, val(x) >>> 0, true)); break; }
        case 'ld.global.v4.u32': case 'ld.global.cg.v4.u32': { const p = this.check(address(a), 16); list(d).forEach((x, i) => set(x, g.getUint32(p + 4 * i, true))); break; }
        default: throw new Error(`PtxSim: unknown instruction ${op} (${line})`);
      }
    }
  }

  /** mov.b32 copies bits: between an f32 register and an integer one the number is reinterpreted. */
  private movBits(d: string, a: string, v: number): number {
    const to = this.regTypes.get(d), from = a.startsWith('%') ? this.regTypes.get(a) : undefined;
    const dv = new DataView(new ArrayBuffer(4));
    if (to === 'f32' && from !== undefined && from !== 'f32') return dv.setUint32(0, v >>> 0), dv.getFloat32(0);
    if (to !== 'f32' && from === 'f32') return dv.setFloat32(0, v), dv.getUint32(0);
    return v;
  }

  /** An access of `size` bytes at p: aligned to its size and inside one allocation (stricter than the GPU, which faults only outside its pages). */
  private check(p: number, size: number): number {
    if (p % size !== 0) throw new Error(`PtxSim: misaligned ${size}-byte global access at ${p}`);
    if (!this.buffers.some((b) => p >= b.addr && p + size <= b.addr + b.bytes)) throw new Error(`PtxSim: global access at ${p} outside every allocation`);
    return p;
  }
}

interface SimThread {
  pc: number;
  done: boolean;
  /** Stopped at a warp-level operation (code[pc]), for warpOp to run with the rest of its warp. */
  atWarpOp: boolean;
  regs: Map<string, number>;
}

/** The warp-level operations (guarded or not), which runToBarrier leaves to warpOp. */
const WARP_OP = /^(@!?%\w+\s+)?(shfl\.sync|vote\.sync|redux\.sync|bar\.warp\.sync)\b/;

/** A register's value or an integer immediate, in thread t. */
function operand(t: SimThread, s: string): number {
  if (s.startsWith('%')) return reg(t, s);
  if (/^-?\d+$/.test(s)) return Number(s);
  throw new Error(`PtxSim: operand ${s}`);
}
function reg(t: SimThread, s: string): number {
  const v = t.regs.get(s);
  if (v === undefined) throw new Error(`PtxSim: ${s} read before written`);
  return v;
}

/** x rounded to the nearest integer, ties to even (x ≥ 0, exact in float64). */
function roundHalfEven(x: number): number {
  const r = Math.floor(x), frac = x - r;
  return frac > 0.5 || (frac === 0.5 && r % 2 === 1) ? r + 1 : r;
}

/**
 * The f16 bits of f32 v, rounded to nearest even (cvt.rn.f16.f32; NaN → the canonical 0x7FFF), worked
 * out here in float64 (exact for an f32's scaling by powers of two), not by the host's f32ToF16.
 */
function f16Bits(v: number): number {
  if (Number.isNaN(v)) return 0x7fff;
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0, a = Math.abs(v);
  if (a < 2 ** -14) return sign | roundHalfEven(a / 2 ** -24); // subnormal (2^-24 steps); 0x400 if it rounds up to the smallest normal
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  if (2 ** (e + 1) <= a) e++;
  let q = roundHalfEven((a / 2 ** e - 1) * 1024);
  if (q === 1024) (e++, (q = 0));
  return e + 15 >= 31 ? sign | 0x7c00 : sign | ((e + 15) << 10) | q;
}

/** The bf16 bits of f32 v, rounded to nearest even (cvt.rn.bf16.f32; NaN → the canonical 0x7FFF). */
function bf16Bits(v: number): number {
  if (Number.isNaN(v)) return 0x7fff;
  const dv = new DataView(new ArrayBuffer(4));
  dv.setFloat32(0, v);
  const b = dv.getUint32(0);
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}
