// Numbers as an exporter wrote them in float32.
/** The shortest decimal that is the same float32 (an exporter writes eps as float32: 1e-5 reads 9.9999997e-6). */
export function f32Decimal(x: number): number {
  for (let p = 1; p <= 9; p++) {
    const v = Number(x.toPrecision(p));
    if (Math.fround(v) === Math.fround(x)) return v;
  }
  return x;
}
