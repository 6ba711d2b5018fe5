// Parses the text form written by print.ts back into a Graph (then verify it).
import type { DType } from '../util/dtype.js';
import type { AttrValue, Checkpoint, Dim, Graph, Node, Operand, ParamDecl, StateDecl, TensorType, ValueDecl } from './types.js';
import { CHECKPOINTS } from './types.js';

const NAME = '[A-Za-z_][A-Za-z0-9_.]*';
const DTYPES = new Set(['f32', 'f16', 'bf16', 'i32', 'u16']);

export class ParseError extends Error {
  override name = 'ParseError';
}

function parseType(text: string, where: string): TensorType {
  const m = /^([a-z0-9_]+)\[([^\]]*)\]$/.exec(text.trim());
  if (!m || !DTYPES.has(m[1]!)) throw new ParseError(`${where}: bad type '${text.trim()}'`);
  const shape: Dim[] = m[2]!.trim() === '' ? [] : m[2]!.split(',').map((d) => {
    const s = d.trim();
    if (/^\d+$/.test(s)) return Number(s);
    if (new RegExp(`^${NAME}$`).test(s)) return s;
    throw new ParseError(`${where}: bad dimension '${s}'`);
  });
  return { dtype: m[1] as DType, shape };
}

function parseOperand(text: string, where: string): Operand {
  const s = text.trim();
  const m = new RegExp(`^([%@])(${NAME})$`).exec(s);
  if (!m) throw new ParseError(`${where}: bad operand '${s}'`);
  return { kind: m[1] === '@' ? 'param' : 'value', name: m[2]! };
}

/** Splits a list on commas outside brackets: "f32[T,4], i32[T]" → two types. */
function splitTypes(text: string): string[] {
  const out: string[] = [];
  let depth = 0, cur = '';
  for (const c of text) {
    if (c === '[') depth++;
    if (c === ']') depth--;
    if (c === ',' && depth === 0) { out.push(cur); cur = ''; } else cur += c;
  }
  out.push(cur);
  return out;
}

/** The annotation block `[ckpt=save]`: the only annotation is the checkpoint kind. */
function parseCkpt(text: string, where: string): Checkpoint {
  const kv = parseKeyValues(text, where, (v) => v.trim());
  for (const k of Object.keys(kv)) if (k !== 'ckpt') throw new ParseError(`${where}: unknown annotation '${k}' (only ckpt=save|recompute)`);
  const v = kv.ckpt;
  if (!CHECKPOINTS.includes(v as Checkpoint)) throw new ParseError(`${where}: ckpt must be ${CHECKPOINTS.join(' or ')}, got '${v ?? ''}'`);
  return v as Checkpoint;
}

/** Splits "a=1, s=\"x, y\"" on top-level commas, respecting quoted strings. */
function splitList(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inStr = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (inStr && c === '\\') { cur += c + text[++i]; continue; }
    if (c === '"') inStr = !inStr;
    if (c === ',' && !inStr) { out.push(cur); cur = ''; } else cur += c;
  }
  if (cur.trim() !== '') out.push(cur);
  return out;
}

function parseAttr(text: string, where: string): AttrValue {
  const s = text.trim();
  if (s.startsWith('"')) return JSON.parse(s) as string;
  if (s === 'true' || s === 'false') return s === 'true';
  const n = Number(s);
  if (s === '' || Number.isNaN(n)) throw new ParseError(`${where}: bad attribute value '${s}'`);
  return n;
}

function parseKeyValues<T>(text: string, where: string, conv: (v: string) => T): Record<string, T> {
  const out: Record<string, T> = {};
  for (const part of splitList(text)) {
    const eq = part.indexOf('=');
    if (eq < 0) throw new ParseError(`${where}: expected key=value, got '${part.trim()}'`);
    out[part.slice(0, eq).trim()] = conv(part.slice(eq + 1));
  }
  return out;
}

export function parseGraph(text: string): Graph {
  const lines = text.split('\n');
  let name: string | null = null;
  const inputs: ValueDecl[] = [];
  const params: ParamDecl[] = [];
  const states: StateDecl[] = [];
  const nodes: Node[] = [];
  const outputs: string[] = [];
  let ended = false;
  const TYPE = '[a-z0-9_]+\\[[^\\]]*\\]';
  const nodeRe = new RegExp(`^(%${NAME}(?:\\s*,\\s*%${NAME})*)\\s*=\\s*([a-z_0-9]+)\\((.*?)\\)\\s*(?:\\{(.*)\\})?\\s*:\\s*(${TYPE}(?:\\s*,\\s*${TYPE})*)\\s*(?:\\[(.*)\\])?$`);
  for (let i = 0; i < lines.length; i++) {
    const where = `line ${i + 1}`;
    const line = lines[i]!.replace(/\s+$/, '').trim();
    if (line === '' || line.startsWith('#')) continue;
    if (ended) throw new ParseError(`${where}: text after 'end'`);
    let m: RegExpExecArray | null;
    if ((m = new RegExp(`^graph (${NAME})$`).exec(line))) {
      if (name !== null) throw new ParseError(`${where}: second 'graph' header`);
      name = m[1]!;
    } else if (name === null) {
      throw new ParseError(`${where}: expected 'graph NAME' first`);
    } else if ((m = new RegExp(`^input %(${NAME})\\s*:\\s*(.+)$`).exec(line))) {
      inputs.push({ name: m[1]!, type: parseType(m[2]!, where) });
    } else if ((m = new RegExp(`^state %(${NAME})\\s*:\\s*(.+?)\\s+next\\s+%(${NAME})$`).exec(line))) {
      states.push({ name: m[1]!, type: parseType(m[2]!, where), next: m[3]! });
    } else if ((m = new RegExp(`^param @(${NAME})\\s*:\\s*([^{]+?)\\s*(?:\\{(.*)\\})?$`).exec(line))) {
      const flags = m[3] === undefined ? [] : m[3].split(',').map((f) => f.trim());
      for (const f of flags) if (f !== 'frozen' && f !== 'transposed') throw new ParseError(`${where}: unknown param flag '${f}' (frozen, transposed)`);
      params.push({ name: m[1]!, type: parseType(m[2]!, where), trainable: !flags.includes('frozen'), ...(flags.includes('transposed') ? { transposed: true } : {}) });
    } else if ((m = new RegExp(`^output %(${NAME})$`).exec(line))) {
      outputs.push(m[1]!);
    } else if (line === 'end') {
      ended = true;
    } else if ((m = nodeRe.exec(line))) {
      const names = m[1]!.split(',').map((x) => x.trim().slice(1));
      const types = splitTypes(m[5]!).map((x) => parseType(x, where));
      const at = `${where} (${m[1]!.trim()})`;
      if (types.length !== names.length) throw new ParseError(`${at}: ${names.length} outputs but ${types.length} types`);
      nodes.push({
        op: m[2]!,
        inputs: m[3]!.trim() === '' ? [] : m[3]!.split(',').map((o) => parseOperand(o, where)),
        attrs: m[4] ? parseKeyValues(m[4], where, (v) => parseAttr(v, where)) : {},
        outputs: names.map((name, i) => ({ name, type: types[i]! })),
        ...(m[6] !== undefined ? { ckpt: parseCkpt(m[6], at) } : {}),
      });
    } else {
      throw new ParseError(`${where}: cannot parse '${line}'`);
    }
  }
  if (name === null) throw new ParseError('empty graph text');
  if (!ended) throw new ParseError(`graph ${name}: missing 'end'`);
  return { name, inputs, states, params, nodes, outputs };
}
