// The training-data layer of `mocc train` / `mocc eval`: reading data files into documents of token
// ids (data-read.ts, with the text formats in text-formats.ts and binary sniffing in binary.ts), and
// cutting them into model batches (batches.ts). Callers import from here.
export { DATA_FORMATS, readTokenData, tokenCount, tokenDataFromDocuments } from './data-read.js';
export type { DataFormat, ReadTokenDataOptions, TokenData } from './data-read.js';
export { checkSeqFitsContext, evalBatches, predictionCount, WindowSampler } from './batches.js';
export type { SamplerState, TokenBatch, WindowOptions } from './batches.js';
