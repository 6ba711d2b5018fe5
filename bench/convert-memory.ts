// Benchmark (not a test): converts a ≥ 2 GiB synthetic bf16 LLaMA checkpoint with the mocc CLI in a
// child node process and reports wall time and the child's peak RSS. Fails (exit 1) if the peak RSS
// reaches the limit (512 MiB by default) or the conversion fails.
//
//   npm run build && node dist/bench/convert-memory.js [--keep] [--dir D] [--small]
//        [--limit-mib N] [--cli PATH] [--stand-in stream|slurp] [--save | --out FILE]
//
// --save       write the results to bench/results/ (tracked in git); without it they go to the system's
//              temporary directory, or to --out FILE
// --keep       keep the checkpoint and package (a later run with the same --dir reuses the checkpoint)
// --dir D      work directory (default bench/work/, git-ignored)
// --small      a ~100 MB checkpoint instead of the 2 GiB one (to try the harness quickly)
// --cli PATH   the CLI entry to run (default dist/cli/mocc.js)
// --stand-in   run a stand-in converter instead of the CLI, to check the harness itself:
//              'stream' reads every shard in 4 MiB pieces (low RSS), 'slurp' reads every shard whole (high RSS)
//
// How the peak RSS is measured: the child runs as `node --import <hook> <cli> convert ...`; the hook
import { projectRoot } from '../src/util/project-root.js';
// writes process.resourceUsage() (getrusage(RUSAGE_SELF).ru_maxrss, the kernel's exact high-water
// mark for the process, worker threads included) to a file on 'exit'. While it runs, the harness also
// samples /proc/<pid>/status VmHWM and the summed VmRSS of the child's process tree every 50 ms (this
// also covers any grandchild processes the converter might spawn). The reported peak is the larger.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { resultsFile } from './results-file.js';
import { syntheticCheckpointBytes, SYNTHETIC_2GIB_PRESET, writeSyntheticLlama, type SyntheticLlamaOptions } from './synthetic-checkpoint.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

const SMALL_PRESET: SyntheticLlamaOptions = {
  dim: 512, nLayers: 8, nHeads: 8, nKvHeads: 2, dFfn: 1376, vocab: 32000, shardBytes: 32 * MiB, seed: 1234, tiedEmbeddings: false,
};


interface Args { keep: boolean; dir?: string; small: boolean; limitMiB: number; cli?: string; standIn?: 'stream' | 'slurp'; save: boolean; out?: string }

function parseArgs(argv: string[]): Args {
  const a: Args = { keep: false, small: false, limitMiB: 512, save: false };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i]!;
    const val = (): string => {
      const x = argv[++i];
      if (x === undefined) usage(`${v} needs a value`);
      return x!;
    };
    switch (v) {
      case '--keep': a.keep = true; break;
      case '--save': a.save = true; break;
      case '--out': a.out = val(); break;
      case '--small': a.small = true; break;
      case '--dir': a.dir = val(); break;
      case '--cli': a.cli = val(); break;
      case '--limit-mib': a.limitMiB = Number(val()); if (!(a.limitMiB > 0)) usage('--limit-mib needs a positive number'); break;
      case '--stand-in': {
        const s = val();
        if (s !== 'stream' && s !== 'slurp') usage(`--stand-in is stream or slurp, not ${s}`);
        a.standIn = s as 'stream' | 'slurp';
        break;
      }
      case '-h': case '--help': usage(); break;
      default: usage(`unknown argument ${v}`);
    }
  }
  return a;
}

function usage(err?: string): never {
  if (err) console.error(`convert-memory: ${err}`);
  console.error('usage: node dist/bench/convert-memory.js [--keep] [--dir D] [--small] [--limit-mib N] [--cli PATH] [--stand-in stream|slurp] [--save | --out FILE]');
  process.exit(err ? 2 : 0);
}

const HOOK = `import { writeFileSync } from 'node:fs';
const out = process.env.MOCC_BENCH_RSS_FILE;
process.on('exit', (code) => {
  if (!out) return;
  try { writeFileSync(out, JSON.stringify({ code, resourceUsage: process.resourceUsage() })); } catch {}
});
`;

/** Stand-in converters with the CLI's argv (convert <ckpt> -o <pkg> ...), to check the harness. */
function standInScript(mode: 'stream' | 'slurp'): string {
  return `import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
const args = process.argv.slice(2);
const ckpt = args[1], pkg = args[args.indexOf('-o') + 1];
if (args[0] !== 'convert' || !ckpt || !pkg) { console.error('stand-in: bad args ' + args.join(' ')); process.exit(2); }
const files = readdirSync(ckpt).filter((f) => f.endsWith('.safetensors')).sort();
let sum = 0, bytes = 0;
const held = [];
for (const f of files) {
  if (${JSON.stringify(mode)} === 'slurp') {
    const b = readFileSync(join(ckpt, f));
    held.push(b);
    for (let i = 0; i < b.length; i += 4096) sum = (sum + b[i]) | 0;
    bytes += b.length;
  } else {
    const fd = openSync(join(ckpt, f), 'r');
    const buf = Buffer.alloc(4 << 20);
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) {
      for (let i = 0; i < n; i += 4096) sum = (sum + buf[i]) | 0;
      bytes += n;
    }
    closeSync(fd);
  }
}
mkdirSync(pkg, { recursive: true });
writeFileSync(join(pkg, 'stand-in.json'), JSON.stringify({ mode: ${JSON.stringify(mode)}, files: files.length, bytes, sum, held: held.length }));
console.log('stand-in (${mode}): read ' + bytes + ' bytes from ' + files.length + ' files');
`;
}

/** kB value of a field of /proc/<pid>/status, or undefined. */
function procStatusKiB(pid: number, field: string): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** The pid and all its descendants (through /proc/<pid>/task/<tid>/children). */
function processTree(pid: number): number[] {
  const out: number[] = [];
  const stack = [pid];
  while (stack.length > 0) {
    const p = stack.pop()!;
    out.push(p);
    try {
      for (const tid of readdirSync(`/proc/${p}/task`)) {
        const kids = readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8').trim();
        if (kids) for (const k of kids.split(/\s+/)) stack.push(Number(k));
      }
    } catch { /* gone, or no children file */ }
  }
  return out;
}

function dirBytes(p: string): number {
  if (!existsSync(p)) return 0;
  const st = statSync(p);
  if (!st.isDirectory()) return st.size;
  let s = 0;
  for (const e of readdirSync(p)) s += dirBytes(join(p, e));
  return s;
}

const fmtMiB = (b: number | undefined): string => (b === undefined ? 'n/a' : `${(b / MiB).toFixed(1)} MiB`);

interface ChildResult {
  exitCode: number | null;
  signal: string | null;
  wallSeconds: number;
  /** ru_maxrss from the hook, bytes. */
  hookMaxRssBytes?: number;
  /** Max VmHWM sampled from /proc, bytes. */
  polledHwmBytes?: number;
  /** Max of the summed VmRSS of the process tree, bytes. */
  polledTreeRssBytes?: number;
  outputTail: string;
}

function runChild(cmd: string, argv: string[], rssFile: string): Promise<ChildResult> {
  rmSync(rssFile, { force: true });
  return new Promise((resolvePromise, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MOCC_BENCH_RSS_FILE: rssFile } });
    let tail = '';
    const keep = (d: Buffer, to: NodeJS.WriteStream): void => {
      to.write(d);
      tail = (tail + d.toString('utf8')).slice(-4000);
    };
    child.stdout!.on('data', (d: Buffer) => keep(d, process.stdout));
    child.stderr!.on('data', (d: Buffer) => keep(d, process.stderr));
    let hwm = 0;
    let tree = 0;
    const sample = (): void => {
      if (child.pid === undefined) return;
      const h = procStatusKiB(child.pid, 'VmHWM');
      if (h !== undefined) hwm = Math.max(hwm, h * 1024);
      let sum = 0;
      for (const p of processTree(child.pid)) sum += (procStatusKiB(p, 'VmRSS') ?? 0) * 1024;
      tree = Math.max(tree, sum);
    };
    const timer = setInterval(sample, 50);
    child.on('error', (e) => {
      clearInterval(timer);
      reject(e);
    });
    child.on('exit', () => sample());
    child.on('close', (code, signal) => {
      clearInterval(timer);
      const wallSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
      let hookMaxRssBytes: number | undefined;
      try {
        const r = JSON.parse(readFileSync(rssFile, 'utf8')) as { resourceUsage: { maxRSS: number } };
        hookMaxRssBytes = r.resourceUsage.maxRSS * 1024; // maxRSS is in KiB
      } catch { /* killed before 'exit' */ }
      resolvePromise({
        exitCode: code, signal, wallSeconds, hookMaxRssBytes,
        polledHwmBytes: hwm || undefined, polledTreeRssBytes: tree || undefined, outputTail: tail,
      });
    });
  });
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const root = projectRoot();
  const work = resolve(args.dir ?? join(root, 'bench', 'work'));
  const workExisted = existsSync(work);
  mkdirSync(work, { recursive: true });
  const ckptDir = join(work, 'checkpoint');
  const pkgDir = join(work, 'package');
  const hookPath = join(work, 'rss-hook.mjs');
  const rssFile = join(work, 'child-rusage.json');
  const standInPath = join(work, 'stand-in-convert.mjs');
  const created = [ckptDir, pkgDir, hookPath, rssFile, standInPath];

  const cleanup = (): void => {
    if (args.keep) return;
    if (!workExisted) rmSync(work, { recursive: true, force: true });
    else {
      for (const p of created) rmSync(p, { recursive: true, force: true });
      if (readdirSync(work).length === 0) rmSync(work, { recursive: true, force: true });
    }
  };

  let exitCode = 0;
  try {
    const cli = resolve(args.cli ?? join(root, 'dist', 'cli', 'mocc.js'));
    if (!args.standIn && !existsSync(cli)) {
      console.error(`convert-memory: ${cli} does not exist: run \`npm run build\` first (or try the harness with --stand-in stream)`);
      process.exitCode = 2;
      return;
    }

    // 1. The synthetic checkpoint (reused when --keep left an identical one).
    const opts = args.small ? SMALL_PRESET : SYNTHETIC_2GIB_PRESET;
    const stamp = join(ckptDir, '.synthetic.json');
    const stampText = JSON.stringify(opts);
    let genSeconds = 0;
    if (existsSync(stamp) && readFileSync(stamp, 'utf8') === stampText) {
      console.error(`convert-memory: reusing ${ckptDir}`);
    } else {
      rmSync(ckptDir, { recursive: true, force: true });
      const total = syntheticCheckpointBytes(opts);
      console.error(`convert-memory: writing a ${(total / GiB).toFixed(2)} GiB synthetic bf16 checkpoint to ${ckptDir} ...`);
      const t0 = Date.now();
      let lastPct = -1;
      await writeSyntheticLlama(ckptDir, opts, (done, all) => {
        const pct = Math.floor((100 * done) / all);
        if (pct >= lastPct + 10) {
          lastPct = pct;
          process.stderr.write(`  ${pct}%\n`);
        }
      });
      genSeconds = (Date.now() - t0) / 1000;
      writeFileSync(stamp, stampText);
    }
    const ckptFiles = readdirSync(ckptDir).filter((f) => !f.startsWith('.'));
    const ckptBytes = ckptFiles.reduce((s, f) => s + statSync(join(ckptDir, f)).size, 0);
    const shards = ckptFiles.filter((f) => f.endsWith('.safetensors')).length;

    // 2. The conversion, in a child process.
    writeFileSync(hookPath, HOOK);
    rmSync(pkgDir, { recursive: true, force: true });
    let entry = cli;
    if (args.standIn) {
      writeFileSync(standInPath, standInScript(args.standIn));
      entry = standInPath;
    }
    const cliArgs = ['convert', ckptDir, '-o', pkgDir, '--k-ratio', '0.19', '--force'];
    const nodeArgs = ['--import', pathToFileURL(hookPath).href, entry, ...cliArgs];
    const shown = ['node', '--import', '<rss-hook>', relative(root, entry) || entry, ...cliArgs.map((a) => (a.startsWith(work) ? relative(root, a) : a))].join(' ');
    console.error(`convert-memory: running ${shown}`);
    const r = await runChild(process.execPath, nodeArgs, rssFile);

    const peakCandidates = [r.hookMaxRssBytes, r.polledHwmBytes, r.polledTreeRssBytes].filter((x): x is number => x !== undefined);
    const peak = peakCandidates.length > 0 ? Math.max(...peakCandidates) : undefined;
    const limit = args.limitMiB * MiB;
    const ok = r.exitCode === 0;
    const underLimit = peak !== undefined && peak < limit;
    const pkgBytes = dirBytes(pkgDir);

    const result = {
      date: new Date().toISOString(),
      command: shown,
      standIn: args.standIn ?? null,
      node: process.version,
      platform: `${process.platform} ${process.arch}`,
      cpu: `${cpus().length} × ${cpus()[0]?.model ?? '?'}`,
      totalMemoryBytes: totalmem(),
      checkpoint: { preset: args.small ? 'small' : '2GiB', options: opts, files: ckptFiles.length, shards, bytes: ckptBytes, generationSeconds: genSeconds },
      exitCode: r.exitCode,
      signal: r.signal,
      wallSeconds: r.wallSeconds,
      peakRssBytes: peak ?? null,
      peakRss: {
        ruMaxRssBytes: r.hookMaxRssBytes ?? null,
        polledVmHwmBytes: r.polledHwmBytes ?? null,
        polledTreeRssBytes: r.polledTreeRssBytes ?? null,
      },
      limitBytes: limit,
      packageBytes: pkgBytes,
      pass: ok && underLimit,
    };

    const rows: Array<[string, string]> = [
      ['command', shown],
      ['checkpoint', `${(ckptBytes / GiB).toFixed(3)} GiB (${ckptBytes} bytes), ${shards} shards, bf16`],
      ['exit', r.signal ? `signal ${r.signal}` : String(r.exitCode)],
      ['wall time', `${r.wallSeconds.toFixed(2)} s`],
      ['peak RSS', `${fmtMiB(peak)} (limit ${fmtMiB(limit)})`],
      ['  ru_maxrss (hook)', fmtMiB(r.hookMaxRssBytes)],
      ['  VmHWM (polled)', fmtMiB(r.polledHwmBytes)],
      ['  tree RSS (polled)', fmtMiB(r.polledTreeRssBytes)],
      ['package size', `${(pkgBytes / MiB).toFixed(1)} MiB`],
      ['result', result.pass ? 'PASS' : !ok ? 'FAIL (converter failed)' : 'FAIL (peak RSS ≥ limit)'],
    ];
    const w = Math.max(...rows.map(([k]) => k.length));
    console.log('\nconvert-memory' + (args.standIn ? ` (STAND-IN '${args.standIn}', not the real converter)` : ''));
    for (const [k, v] of rows) console.log(`  ${k.padEnd(w)}  ${v}`);

    const out = resultsFile(args, root, args.standIn ? `convert-memory.stand-in-${args.standIn}.json` : args.small ? 'convert-memory.small.json' : 'convert-memory.json');
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
    console.log(`  results written to ${out.startsWith(root) ? relative(root, out) : out}${args.save || args.out ? '' : ' (--save writes them to bench/results/)'}`);
    if (!ok) console.error(`convert-memory: the converter exited with ${r.signal ?? r.exitCode}; last output:\n${r.outputTail}`);
    exitCode = result.pass ? 0 : 1;
  } finally {
    cleanup();
  }
  process.exitCode = exitCode;
}

main().catch((e: unknown) => {
  console.error(`convert-memory: ${(e as Error).stack ?? e}`);
  process.exitCode = 1;
});
