import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type Locator, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { startAgent, waitFor } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';
import { jobsOf } from '../support/jobs.js';

/**
 * The dashboard in a real headless Chromium against a real API, Redis and agent: sign in, watch
 * a job run live, see a node go offline, and check the phone layout. Screenshots of each step go
 * to test/artifacts/dashboard/; with IMAGEPOD_UPDATE_SCREENSHOTS=1 the overview's also replaces
 * dashboard/screenshot.png, the README's picture.
 */
const ROOT = join(import.meta.dirname, '../..');
const DIST = join(ROOT, 'dashboard/dist/index.html');
const ARTIFACTS = join(ROOT, 'test/artifacts/dashboard');
const README_SHOT = join(ROOT, 'dashboard/screenshot.png');
const CHROMIUM = process.env.IMAGEPOD_TEST_CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
  '--disable-sync',
];
/** Live updates arrive over SSE within a tick (2 s); this leaves room for a slow, shared machine. */
const LIVE = { timeout: 15_000 };

let t: TestApi;
let agent: Agent | null = null;
let userDataDir: string;
let browser: BrowserContext;
let page: Page;

/** Runs a script in the page. Strings, as the tests are type-checked without the DOM's types. */
const inPage = <T = unknown>(p: Page, script: string) => p.evaluate(script) as Promise<T>;
const shot = (p: Page, name: string) => p.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });

beforeAll(async () => {
  if (!existsSync(DIST)) {
    throw new Error('dashboard/dist is missing: run `npm run build:dashboard` first (`npm test` runs it as its pretest step)');
  }
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM} (apt-get install -y chromium, or set IMAGEPOD_TEST_CHROMIUM)`);
  mkdirSync(ARTIFACTS, { recursive: true });
  t = await startTestApi('dashboard', { IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200', IMAGEPOD_HEARTBEAT_TTL_MS: '1500' });
  userDataDir = mkdtempSync(join(tmpdir(), 'imagepod-chromium-'));
  browser = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1440, height: 900 },
    colorScheme: 'light',
    // Bars then show their value at once, not mid-transition, in screenshots.
    reducedMotion: 'reduce',
  });
  page = browser.pages()[0] ?? (await browser.newPage());
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await agent?.stop(0);
  await t?.close();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
});

const badge = (scope: Page | Locator) => scope.locator('.job-status .badge');

describe('the dashboard', () => {
  it('signs in with a token, keeping only an HttpOnly session cookie', async () => {
    await page.goto(`${t.url}/`);
    await expect.poll(() => page.getByRole('heading', { name: 'Sign in' }).isVisible(), LIVE).toBe(true);
    await shot(page, '01-sign-in');

    await page.getByLabel('Token').fill(t.tokens.alice);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByTestId('signed-in-as').textContent(), LIVE).toBe('alice');
    // From here on the page must update itself: a reload would drop this marker.
    await page.evaluate('window.__noReload = true');

    const stored = await inPage<{ local: string; session: string; cookie: string }>(
      page,
      '({ local: JSON.stringify({ ...localStorage }), session: JSON.stringify({ ...sessionStorage }), cookie: document.cookie })',
    );
    expect(stored.local).not.toContain(t.tokens.alice);
    expect(stored.session).not.toContain(t.tokens.alice);
    expect(stored.cookie).not.toContain('imagepod_session');
    const cookies = await browser.cookies(t.url);
    expect(cookies.find((c) => c.name === 'imagepod_session')).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
    await shot(page, '02-overview-empty');
  }, 60_000);

  let jobId = '';

  it('shows a submitted job waiting, then running with its progress bar and logs, then done', async () => {
    await page.getByRole('link', { name: 'Jobs', exact: true }).click();
    // No agent runs yet: the job waits, and the list shows it without a reload.
    jobId = await jobsOf(t).submit({
      job_name: 'count-to-eight',
      docker_image: 'busybox',
      command: [
        'sh',
        '-c',
        'for i in 1 2 3 4 5 6 7 8; do echo "step $i of 8"; sleep 1; done; echo \'{"ok": true}\' > "$IMAGEPOD_OUTPUT_DIR/result.json"',
      ],
      memory_required: 64,
      timeout_seconds: 20,
    });
    const row = page.locator(`tr[data-job-id="${jobId}"]`);
    await expect.poll(() => row.locator('.badge').textContent(), LIVE).toBe('queued');
    await row.getByRole('link', { name: 'count-to-eight' }).click();
    await expect.poll(() => badge(page).textContent(), LIVE).toBe('queued');
    await expect.poll(() => page.locator('.job-head .wait-reason').textContent(), LIVE).toMatch(/^Waiting: /);
    await shot(page, '03-job-queued');

    agent = await startAgent(t, {
      IMAGEPOD_SIMULATED_GPUS: '2x24564:RTX 4090',
      IMAGEPOD_NODE_LABELS: 'zone=eu-1,team=ml',
      IMAGEPOD_PRICE_PER_GPU_HOUR: '0.79',
      IMAGEPOD_NODE_NAME: 'gpu-box-1',
    });
    await expect.poll(() => badge(page).textContent(), LIVE).toBe('running');
    const bar = page.getByRole('progressbar', { name: 'progress of count-to-eight' });
    await expect.poll(async () => Number(await bar.getAttribute('aria-valuenow')), LIVE).toBeGreaterThan(0);
    const log = page.getByRole('log', { name: 'job log' });
    await expect.poll(() => log.textContent(), LIVE).toContain('step 2 of 8');
    // Lines arrive while the job runs (it has six more seconds to go), not all at once at its end.
    expect(await log.textContent()).not.toContain('job ended');
    await shot(page, '04-job-running');

    await expect.poll(() => badge(page).textContent(), LIVE).toBe('succeeded');
    await expect.poll(() => bar.getAttribute('aria-valuenow'), LIVE).toBe('100');
    await expect.poll(() => log.textContent(), LIVE).toContain('step 8 of 8');
    await expect.poll(() => log.textContent(), LIVE).toContain('job ended: succeeded');
    await expect.poll(() => page.getByTestId('result-json').textContent(), LIVE).toContain('"ok": true');
    await expect.poll(() => page.locator('.facts').first().textContent(), LIVE).toContain('Exit code0');
    expect(await inPage(page, 'window.__noReload')).toBe(true);
    await shot(page, '05-job-succeeded');
  }, 90_000);

  it('shows the node with a bar per GPU, its labels and price', async () => {
    await page.getByRole('link', { name: 'Nodes', exact: true }).click();
    const card = page.locator('article.node-card', { hasText: 'gpu-box-1' });
    await expect.poll(() => card.locator('.node-head .badge').textContent(), LIVE).toBe('online');
    expect(await card.getByRole('meter', { name: /^GPU \d memory used$/ }).count()).toBe(2);
    expect(await card.getByRole('meter', { name: /^GPU \d utilisation$/ }).count()).toBe(2);
    expect(await card.getByRole('meter', { name: 'GPU 0 memory used' }).getAttribute('aria-valuemax')).toBe('24564');
    const text = await card.textContent();
    expect(text).toContain('zone=eu-1');
    expect(text).toContain('0.79/GPU·h');
    expect(text).toContain('RTX 4090');
    await shot(page, '06-nodes');
  }, 60_000);

  it('shows the overview: fleet, queues with what waits for what, the last hour, recent jobs', async () => {
    // Something for every panel: a job that finishes, one that runs, one that cannot be placed.
    const jobs = jobsOf(t);
    await jobs.submit({ job_name: 'embed-batch-17', docker_image: 'busybox', command: ['sh', '-c', 'echo done'], memory_required: 64 });
    const running = await jobs.submit({
      job_name: 'finetune-llama',
      docker_image: 'busybox',
      command: ['sh', '-c', 'echo training; sleep 60'],
      gpu_memory_required: 16384,
      memory_required: 256,
      timeout_seconds: 600,
    });
    await jobs.submit({
      job_name: 'render-h100',
      docker_image: 'busybox',
      command: ['true'],
      gpu_memory_required: 40960,
      gpu_type: 'H100',
    });

    // The API samples fleet memory every 20 s; take this minute's sample now that the job runs.
    await jobs.status(running, 'running');
    await waitFor('the node to report the job’s GPU memory', async () => {
      const f = await t.api.context.overview.fleet();
      return f.gpu_memory_total_mib - f.gpu_memory_free_mib === 16384;
    });
    await t.api.context.overview.sampleNow();
    await page.getByRole('link', { name: 'Overview', exact: true }).click();
    await expect.poll(() => page.locator('.queue-card[data-tier="gpu-48g"] .wait-reason').first().textContent(), LIVE).toContain('H100');
    await expect.poll(() => page.locator('tr', { hasText: 'finetune-llama' }).locator('.badge').textContent(), LIVE).toBe('running');
    await expect.poll(() => page.getByRole('meter', { name: 'fleet GPU memory in use' }).getAttribute('aria-valuenow'), LIVE).toBe('16384');
    await expect
      .poll(() => page.getByRole('img', { name: /^Fleet GPU memory/ }).getAttribute('aria-label'), LIVE)
      .toContain('used 16.0 GiB, total 48.0 GiB');
    await expect
      .poll(
        () =>
          page
            .getByRole('img', { name: /^Jobs per second/ })
            .locator('path.line')
            .count(),
        LIVE,
      )
      .toBe(2);
    await shot(page, '07-overview');
    // The README's picture: written when missing or asked for, so a test run leaves the tree clean.
    if (!existsSync(README_SHOT) || process.env.IMAGEPOD_UPDATE_SCREENSHOTS === '1') {
      await page.screenshot({ path: README_SHOT, fullPage: true });
    }
  }, 60_000);

  it('shows the node offline once its agent stops', async () => {
    await page.getByRole('link', { name: 'Nodes', exact: true }).click();
    const card = page.locator('article.node-card', { hasText: 'gpu-box-1' });
    await expect.poll(() => card.locator('.node-head .badge').textContent(), LIVE).toBe('online');
    await agent?.stop(0);
    agent = null;
    await expect.poll(() => card.locator('.node-head .badge').textContent(), LIVE).toBe('offline');
    expect(await inPage(page, 'window.__noReload')).toBe(true);
    await shot(page, '08-node-offline');
  }, 60_000);

  it('fits a phone screen without sideways scrolling', async () => {
    const phone = await browser.newPage();
    await phone.setViewportSize({ width: 390, height: 844 });
    // How far the page scrolls sideways, and the elements that stick out (to name them in a failure).
    const overflow = () =>
      inPage<{ by: number; wide: string[] }>(
        phone,
        `(() => {
          const width = document.documentElement.clientWidth;
          const wide = [...document.querySelectorAll('body *')]
            .filter((el) => el.getBoundingClientRect().right > width + 1 && !el.closest('.table-wrap, .log-box, .json'))
            .slice(0, 5)
            .map((el) => el.tagName.toLowerCase() + '.' + [...el.classList].join('.'));
          return { by: document.documentElement.scrollWidth - width, wide };
        })()`,
      );
    for (const [name, hash] of [
      ['overview', '#/overview'],
      ['nodes', '#/nodes'],
      ['jobs', '#/jobs'],
      ['job', `#/jobs/${jobId}`],
      ['usage', '#/usage'],
    ] as const) {
      await phone.goto(`${t.url}/${hash}`);
      await expect.poll(() => phone.locator('main.content > *').count(), LIVE).toBeGreaterThan(0);
      await expect.poll(() => phone.locator('.muted', { hasText: /^Loading/ }).count(), LIVE).toBe(0);
      expect(await overflow(), `${name} overflows sideways`).toEqual({ by: 0, wide: [] });
      await shot(phone, `09-phone-${name}`);
    }
    await phone.close();
  }, 90_000);

  it('signs out, after which the API refuses the page', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await expect.poll(() => page.getByRole('heading', { name: 'Sign in' }).isVisible(), LIVE).toBe(true);
    const status = await inPage(page, "fetch('/gpu-workers/me', { credentials: 'same-origin' }).then((r) => r.status)");
    expect(status).toBe(401);
  }, 30_000);

  it('shows an admin everyone’s usage and the way to Bull Board', async () => {
    await page.getByLabel('Token').fill(t.tokens.admin);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByTestId('signed-in-as').textContent(), LIVE).toBe('rootadmin');
    await page.getByRole('link', { name: 'Usage', exact: true }).click();
    await expect.poll(() => page.getByRole('rowheader', { name: 'alice' }).count(), LIVE).toBe(1);
    await shot(page, '10-usage-admin');
    const board = page.getByRole('link', { name: /Bull Board/ });
    expect(await board.getAttribute('href')).toBe('/admin/queues');
    // The session cookie is what lets the admin in: no token in the URL.
    expect((await page.request.get(`${t.url}/admin/queues`)).status()).toBe(200);
  }, 30_000);
});
