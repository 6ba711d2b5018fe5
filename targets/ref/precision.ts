// The float type the ref kernels allocate their results in: float32, the ref target's precision,
// except inside inFloat64(), where the same kernel code runs in float64 (the gradient rules are
// checked against central finite differences that way: test/targets/ref-grad-check.test.ts).
// A Float64Array has the Float32Array API, so the kernels' types stay Float32Array.
let current: Float32ArrayConstructor = Float32Array;

export const newFloats = (n: number): Float32Array => new current(n);
export const floatsFrom = (xs: ArrayLike<number>): Float32Array => current.from(xs);

/** Runs fn with every ref kernel result in float64. */
export function inFloat64<T>(fn: () => T): T {
  const prev = current;
  current = Float64Array as unknown as Float32ArrayConstructor;
  try {
    return fn();
  } finally {
    current = prev;
  }
}
