// The bundle's index.html: says which model runs (dense or MoC, and K), lets you type a prompt, watch
// the tokens stream, stop, and see tokens/s.
import type { ModelInfo } from './bundle-api.js';

/** "dense FFNs" / "MoC, K = 32 of 172 (19%)" / "MoC, K per layer 16,32,… of 172" / "MoC, pattern 2:8 of 172". */
export function mocLabel(info: ModelInfo): string {
  const { moc, dFfn } = info;
  if (moc.mode === 'dense') return 'dense FFNs';
  if (moc.mode === 'pattern') return `MoC, pattern ${moc.pattern} of ${dFfn} channels`;
  const ks = [...new Set(moc.perLayerK)];
  if (ks.length === 1) return `MoC, K = ${ks[0]} of ${dFfn} channels (${Math.round((100 * ks[0]!) / dFfn)}%)`;
  return `MoC, K per layer ${moc.perLayerK.join(',')} of ${dFfn} channels`;
}

const escapeHtml = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

export function demoPage(info: ModelInfo): string {
  const model = `${info.name}: ${info.layers}-layer LLaMA (d ${info.dim}, d_ffn ${info.dFfn}, vocabulary ${info.vocab}), ${mocLabel(info)}`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>mocc: ${escapeHtml(info.name)} on WebGPU</title>
<link rel="icon" href="data:,">
<style>
  body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; }
  textarea { width: 100%; font: inherit; }
  #out { white-space: pre-wrap; border: 1px solid #ccc; padding: .75rem; min-height: 6rem; }
  #status, #model { color: #555; }
</style>
</head>
<body>
<h1>mocc on WebGPU</h1>
<p id="model">${escapeHtml(model)}</p>
<p id="status">loading…</p>
<textarea id="prompt" rows="2">Once upon a time</textarea>
<p><button id="go" disabled>Generate</button> <button id="stop" disabled>Stop</button>
<label>tokens <input id="max" type="number" value="64" min="1" max="${info.context}" step="1"></label></p>
<div id="out"></div>
<p id="speed"></p>
<script type="module">
import { loadModel } from './mocc-model.js';
const $ = (id) => document.getElementById(id);
try {
  const model = await loadModel({ onProgress: (d, n) => ($('status').textContent = \`uploading weights \${d}/\${n}\`) });
  const ready = \`ready on \${model.adapter}\`;
  $('status').textContent = ready;
  $('go').disabled = false;
  $('go').onclick = async () => {
    const max = $('max').valueAsNumber;
    if (!Number.isInteger(max) || max < 1 || max > ${info.context}) {
      $('status').textContent = 'tokens must be a whole number from 1 to ${info.context}';
      return;
    }
    $('status').textContent = ready;
    const stop = new AbortController();
    $('stop').onclick = () => stop.abort();
    $('go').disabled = true;
    $('stop').disabled = false;
    const prompt = $('prompt').value;
    $('out').textContent = prompt;
    delete $('out').dataset.done;
    $('speed').textContent = '';
    try {
      const r = await model.generate(prompt, { maxTokens: max, signal: stop.signal, onText: (s) => ($('out').textContent += s) });
      $('speed').textContent = \`\${r.tokens.length} tokens, \${r.tokensPerSecond.toFixed(1)} tokens/s\${stop.signal.aborted ? ' (stopped)' : ''}\`;
      $('out').dataset.done = 'true';
    } catch (e) {
      $('status').textContent = 'error: ' + e.message;
    }
    $('go').disabled = false;
    $('stop').disabled = true;
  };
} catch (e) {
  $('status').textContent = 'error: ' + e.message;
}
</script>
</body>
</html>
`;
}
