// The bundle's index.html: type a prompt, watch the tokens stream, see tokens/s.
import type { ModelSpec } from '../../src/import/spec.js';

export function demoPage(spec: ModelSpec): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>mocc: ${spec.nLayers}-layer LLaMA on WebGPU</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; }
  textarea { width: 100%; font: inherit; }
  #out { white-space: pre-wrap; border: 1px solid #ccc; padding: .75rem; min-height: 6rem; }
  #status { color: #555; }
</style>
</head>
<body>
<h1>mocc on WebGPU</h1>
<p id="status">loading…</p>
<textarea id="prompt" rows="2">Once upon a time</textarea>
<p><button id="go" disabled>Generate</button> <label>tokens <input id="max" type="number" value="64" min="1" max="${spec.maxSeqLen}"></label></p>
<div id="out"></div>
<p id="speed"></p>
<script type="module">
import { loadModel } from './mocc-model.js';
const $ = (id) => document.getElementById(id);
try {
  const model = await loadModel({ onProgress: (d, n) => ($('status').textContent = \`uploading weights \${d}/\${n}\`) });
  $('status').textContent = \`ready on \${model.adapter}\`;
  $('go').disabled = false;
  $('go').onclick = async () => {
    $('go').disabled = true;
    const prompt = $('prompt').value;
    $('out').textContent = prompt;
    $('speed').textContent = '';
    try {
      const r = await model.generate(prompt, { maxTokens: Number($('max').value), onText: (s) => ($('out').textContent += s) });
      $('speed').textContent = \`\${r.tokens.length} tokens, \${r.tokensPerSecond.toFixed(1)} tokens/s\`;
      $('out').dataset.done = 'true';
    } catch (e) {
      $('status').textContent = 'error: ' + e.message;
    }
    $('go').disabled = false;
  };
} catch (e) {
  $('status').textContent = 'error: ' + e.message;
}
</script>
</body>
</html>
`;
}
