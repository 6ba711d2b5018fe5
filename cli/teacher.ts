// Checks that a teacher and a student speak the same tokens (mocc recover, mocc eval --teacher).
import type { LoadedModel } from '../driver/load.js';
import { UserError } from '../src/util/errors.js';

/** A one-line error unless both have the same vocabulary size and (where both have one) the same tokenizer. */
export function checkSameVocabulary(student: LoadedModel, teacher: LoadedModel): void {
  if (student.spec.vocabSize !== teacher.spec.vocabSize) {
    throw new UserError(`the teacher ${teacher.source} has a vocabulary of ${teacher.spec.vocabSize} tokens, the model ${student.spec.vocabSize}: they must share one tokenizer`);
  }
  if (student.tokenizer && teacher.tokenizer) {
    const a = student.tokenizer.serialize().bytes, b = teacher.tokenizer.serialize().bytes;
    if (a.length !== b.length || a.some((x, i) => x !== b[i])) throw new UserError(`the teacher ${teacher.source} has a different tokenizer from the model's (same vocabulary size, different tokens)`);
  }
}
