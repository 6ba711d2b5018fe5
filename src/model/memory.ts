// FFN activation memory for one training token, the paper's accounting (arXiv 2511.09323, Sec. 3):
//   Dense      keeps x, G, U, S=SiLU(G), Z=S⊙U          → 4·d_ffn + d values
//   Dense+GCP  keeps x, G, U; S and Z are recomputed    → 2·d_ffn + d values
//   MoC        keeps x and the kept G, U, S, Z + indices → 4·K + d values, K indices
//   MoC+GCP    keeps x, G⊙M, U⊙M and M (indices)        → 2·K + d values, K indices

export interface FfnActivationBytes {
  dense: number;
  denseGcp: number;
  moc: number;
  mocGcp: number;
}

/** Activations in `valueBytes` each (2 for bf16 training), indices in `indexBytes` (int32: 4). */
export function ffnActivationBytes(d: number, dFfn: number, k: number, valueBytes = 2, indexBytes = 4): FfnActivationBytes {
  return {
    dense: (4 * dFfn + d) * valueBytes,
    denseGcp: (2 * dFfn + d) * valueBytes,
    moc: (4 * k + d) * valueBytes + k * indexBytes,
    mocGcp: (2 * k + d) * valueBytes + k * indexBytes,
  };
}
