// Drives the ops page in Debian's chromium with JavaScript off, as an operator would:
// log in, read the projections and dead letters, press the first Retry button.
// Requests anywhere but Plaza are refused and reported.
//
// Usage: node ops-page.mjs BASE_URL LOGIN PASSWORD   (prints one JSON line)
import { chromium } from 'playwright-core';

const [base, login, password] = process.argv.slice(2);
const origin = new URL(base).origin;
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox'] });
try {
  const page = await browser.newPage({ javaScriptEnabled: false });
  const outside = [];
  await page.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(origin)) return route.continue();
    outside.push(url);
    return route.abort();
  });
  await page.goto(`${base}/admin`);
  const loginUrl = page.url();
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', password);
  await Promise.all([page.waitForURL(`${base}/admin`), page.click('form[action="/admin/login"] button')]);
  const rows = (selector, key) => page.$$eval(selector, (rows, key) => rows.map((r) => r.dataset[key]), key);
  const projections = await rows('#projections tr[data-projection]', 'projection');
  const states = await page.$$eval('#projections td.state', (cells) => cells.map((c) => c.textContent));
  const letters = (await rows('#dead-letters tr[data-position]', 'position')).map(Number);
  const refresh = (await page.$('meta[http-equiv=refresh]')) !== null;
  await Promise.all([page.waitForURL(`${base}/admin`), page.click('#dead-letters button.retry')]);
  const after = (await rows('#dead-letters tr[data-position]', 'position')).map(Number);
  console.log(JSON.stringify({ loginUrl, projections, states, letters, after, refresh, outside }));
} finally {
  await browser.close();
}
