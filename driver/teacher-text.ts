// Data-free recovery's training text (LLM-QAT, Liu et al. 2023): the dense teacher writes it itself.
// Each sequence starts with BOS and one token drawn uniformly from the vocabulary (BOS and EOS
// excluded), so the sequences start in varied places; the rest is sampled from the teacher's own
// next-token distribution (temperature 1, no nucleus cut), until `length` tokens or EOS. Seeded: the
// same teacher, seed and counts give the same sequences, so a resumed recovery regenerates the data
// its checkpoint was drawn from (the sampler checks the checksum).
import { forwardSync, type ModelSession, type RunnableModel } from '../src/model/runnable.js';
import { Mulberry32, sampleToken } from '../src/run/sample.js';
import { RefSession } from '../targets/ref/session.js';

export interface TeacherTextOptions {
  sequences: number;
  /** Tokens per sequence, BOS included. */
  length: number;
  seed: number;
  onProgress?: (done: number, total: number) => void;
  /**
   * The session that runs the teacher (default: the ref target's). Another target's logits differ in
   * the last bits, so now and then a sampled token, and the text: a resumed recovery must write its
   * text on the same target as the run it continues (the sampler refuses other data by checksum).
   */
  session?: ModelSession;
}

export function teacherText(teacher: RunnableModel, opts: TeacherTextOptions): Int32Array[] {
  const rng = new Mulberry32(opts.seed);
  const random = () => rng.next();
  const { vocabSize: V, bosId, eosId } = teacher.spec;
  const firsts = Array.from({ length: V }, (_, i) => i).filter((i) => i !== bosId && i !== eosId);
  const session = opts.session ?? new RefSession(teacher);
  const docs: Int32Array[] = [];
  for (let s = 0; s < opts.sequences; s++) {
    session.reset();
    const seq = [bosId, firsts[Math.floor(random() * firsts.length)]!];
    let logits = forwardSync(session, seq, 'teacherText');
    while (seq.length < opts.length) {
      const next = sampleToken(logits.subarray(logits.length - V), { temperature: 1, topP: 1, random });
      if (next === eosId) break;
      seq.push(next);
      if (seq.length < opts.length) logits = forwardSync(session, [next], 'teacherText');
    }
    docs.push(Int32Array.from(seq));
    opts.onProgress?.(s + 1, opts.sequences);
  }
  return docs;
}

