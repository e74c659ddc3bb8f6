// Opens GraphiQL in Debian's chromium with every request outside Plaza refused, runs a
// query with its Execute button and reads the answer from the result pane.
//
// Usage: node graphiql.mjs BASE_URL QUERY   (prints one JSON line)
import { chromium } from 'playwright-core';

const [base, query] = process.argv.slice(2);
const origin = new URL(base).origin;
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox'] });
try {
  const page = await browser.newPage();
  const outside = [];
  const errors = [];
  page.on('pageerror', (error) => errors.push(String(error)));
  await page.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(origin)) return route.continue();
    outside.push(url);
    return route.abort();
  });
  await page.goto(`${base}/graphql?query=${encodeURIComponent(query)}`);
  await page.waitForSelector('.graphiql-container', { timeout: 20000 });
  await page.click('.graphiql-execute-button');
  await page.waitForFunction(() => (document.querySelector('.result-window')?.textContent ?? '').includes('"data"'), null, { timeout: 20000 });
  const result = await page.$eval('.result-window', (pane) => pane.textContent);
  console.log(JSON.stringify({ result, outside, errors }));
} finally {
  await browser.close();
}
