// The compiled bundle in a real browser: Debian's chromium, headless, driven by playwright-core,
// with WebGPU on SwiftShader (no GPU needed). Types the prompt into the demo page, clicks Generate,
// and checks the streamed text against Hugging Face's greedy continuation; also that the page names
// the model it runs, refuses 0 tokens, stops on Stop, and asks the server for nothing it lacks (favicon).
import test from 'ava';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { mocc, tempDir } from '../helpers/cli.js';
import { CHECKPOINTS, REF } from '../helpers/fixtures.js';
import { serveDir } from '../helpers/serve.js';
import { chromiumRequirement, CHROMIUM_PATH, testsNeeding } from '../helpers/requires.js';

/** Headless chromium with WebGPU on SwiftShader's Vulkan, and none of its calls out to the network. */
const ARGS = [
  '--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader', '--use-webgpu-adapter=swiftshader', '--use-angle=swiftshader',
];

testsNeeding(chromiumRequirement())('the demo page streams the HF greedy text in headless chromium', async (t) => {
  const dir = join(tempDir(t), 'web');
  const r = mocc('compile', CHECKPOINTS.gguf, '--target', 'wgsl', '-o', dir);
  t.is(r.code, 0, r.stderr);
  const url = await serveDir(t, dir);
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: ARGS });
  t.teardown(() => browser.close());
  const page = await browser.newPage();
  const errors: string[] = [];
  const missing: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => void (m.type() === 'error' && errors.push(m.text())));
  page.on('response', (r) => void (r.status() >= 400 && missing.push(`${r.status()} ${r.url()}`)));
  await page.goto(`${url}/index.html`);
  await page.waitForSelector('#go:not([disabled])', { timeout: 120_000 });
  t.regex((await page.textContent('#status')) ?? '', /^ready on /);
  t.is(await page.textContent('#model'), 'stories260K.gguf: 5-layer LLaMA (d 64, d_ffn 172, vocabulary 512), dense FFNs');
  // 0 tokens: refused, nothing runs
  await page.fill('#max', '0');
  await page.click('#go');
  t.regex((await page.textContent('#status')) ?? '', /^tokens must be a whole number from 1 to \d+$/);
  t.is(await page.textContent('#out'), '');
  await page.fill('#prompt', REF.prompt);
  await page.fill('#max', '120');
  await page.click('#go');
  await page.waitForSelector('#out[data-done="true"]', { timeout: 240_000 });
  t.is(await page.textContent('#out'), REF.greedy_text);
  t.regex((await page.textContent('#speed')) ?? '', /^\d+ tokens, [\d.]+ tokens\/s$/);
  // Stop: ends a long generation early, and the page can generate again
  await page.fill('#max', '400');
  await page.click('#go');
  await page.waitForFunction((n) => (document.getElementById('out')!.textContent ?? '').length > n, REF.prompt.length + 10);
  await page.click('#stop');
  await page.waitForSelector('#out[data-done="true"]', { timeout: 240_000 });
  const stopped = (await page.textContent('#speed')) ?? '';
  t.regex(stopped, /^\d+ tokens, [\d.]+ tokens\/s \(stopped\)$/);
  t.true(Number(stopped.split(' ')[0]) < 400, stopped);
  t.true(await page.isEnabled('#go'));
  t.true(await page.isDisabled('#stop'));
  t.deepEqual(errors, []);
  t.deepEqual(missing, [], 'no request fails (e.g. /favicon.ico)');
});
