// Which gate channels a MoC FFN keeps, as the user chose it (--k, --k-ratio, --pattern): the
// swiglu-to-moc pass turns it into moc_select attributes per layer.
export type MocSelection = { k: number | number[] } | { kRatio: number } | { pattern: { a: number; b: number } };
