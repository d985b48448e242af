// What the browser tests share: Debian's Chromium driven by playwright-core (headless, WebGL
// through SwiftShader), named steps that report their time, a page that records console errors,
// and small helpers for the server's API.
import { chromium } from 'playwright-core';

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--use-gl=swiftshader', '--enable-unsafe-swiftshader', '--ignore-gpu-blocklist'],
  });
}

// A page whose console errors and uncaught exceptions land in `errors`.
export async function openPage(browser) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  return { page, errors };
}

export async function step(name, body) {
  const started = Date.now();
  try { await body(); } catch (e) { throw new Error(`${name}: ${e.message}`); }
  console.log(`ok: ${name} (${Date.now() - started} ms)`);
}

export async function serverReady(base) {
  const deadline = Date.now() + 30000;
  while (!(await fetch(`${base}ready`).then((r) => r.ok, () => false))) {
    if (Date.now() > deadline) throw new Error('no 200 from /ready within 30 s');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

// `method` `path` with a JSON body (and a bearer `token` when given); throws with the server's
// answer unless it is a success.
export async function api(base, method, path, body, token) {
  const headers = {
    ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    ...(token ? { authorization: `Bearer ${token}` } : {}),
  };
  const reply = await fetch(`${base}${path.replace(/^\//, '')}`, { method, headers,
    body: body === undefined ? undefined : JSON.stringify(body) });
  if (!reply.ok) throw new Error(`${method} ${path} answered ${reply.status}: ${await reply.text()}`);
  return reply.status === 204 ? null : reply.json();
}

// Runs `steps(page)` in a fresh page; saves a screenshot whatever happens. False on failure.
export async function run(browser, screenshot, steps) {
  const { page, errors } = await openPage(browser);
  try {
    await steps(page, errors);
    return true;
  } catch (e) {
    console.error(`FAILED ${e.message}`);
    return false;
  } finally {
    await page.screenshot({ path: screenshot }).catch((e) => console.error(`no screenshot: ${e.message}`));
    await page.close();
  }
}
