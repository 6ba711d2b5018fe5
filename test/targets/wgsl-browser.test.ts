// The compiled bundle in a real browser: Debian's chromium, headless, driven by playwright-core,
// with WebGPU on SwiftShader (no GPU needed). Types the prompt into the demo page, clicks Generate,
// and checks the streamed text against Hugging Face's greedy continuation.
import test from 'ava';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { mocc, tempDir } from '../helpers/cli.js';
import { CHECKPOINTS, REF } from '../helpers/fixtures.js';
import { serveDir } from '../helpers/serve.js';
import { CHROMIUM, CHROMIUM_PATH, testsNeeding } from '../helpers/requires.js';

/** Headless chromium with WebGPU on SwiftShader's Vulkan, and none of its calls out to the network. */
const ARGS = [
  '--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader', '--use-webgpu-adapter=swiftshader', '--use-angle=swiftshader',
];

testsNeeding(CHROMIUM)('the demo page streams the HF greedy text in headless chromium', async (t) => {
  const dir = join(tempDir(t), 'web');
  const r = mocc('compile', CHECKPOINTS.gguf, '--target', 'wgsl', '-o', dir);
  t.is(r.code, 0, r.stderr);
  const url = await serveDir(t, dir);
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: ARGS });
  t.teardown(() => browser.close());
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${url}/index.html`);
  await page.waitForSelector('#go:not([disabled])', { timeout: 120_000 });
  t.regex((await page.textContent('#status')) ?? '', /^ready on /);
  await page.fill('#prompt', REF.prompt);
  await page.fill('#max', '120');
  await page.click('#go');
  await page.waitForSelector('#out[data-done="true"]', { timeout: 240_000 });
  t.is(await page.textContent('#out'), REF.greedy_text);
  t.regex((await page.textContent('#speed')) ?? '', /^\d+ tokens, [\d.]+ tokens\/s$/);
  t.deepEqual(errors, []);
});
