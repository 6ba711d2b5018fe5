/** One fuzz case's files (paths relative to the case directory) and the path mocc opens. */
export interface FuzzFiles {
  files: Record<string, Uint8Array>;
  open: string;
}
