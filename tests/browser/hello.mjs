// The README's quick start (examples/hello) in two browser windows: a wave in one appears in both.
//
//   node hello.mjs <base-url>
//
// Run by tests/fixture/tests/browser.rs, which serves `hello::app()`. Every wait has a timeout; nothing
// sleeps to wait.

import { launch, WAIT } from "./chromium.mjs";

const [base] = process.argv.slice(2);

const browser = await launch();
let failed = false;
try {
  const windows = [];
  for (const name of ["alice", "bob"]) {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on("pageerror", (e) => {
      failed = true;
      console.error(`[${name}] page error: ${e}`);
    });
    await page.goto(`${base}/`);
    await page.waitForFunction(() => document.documentElement.dataset.syncState === "open", null, WAIT);
    windows.push({ name, page });
  }
  const [alice, bob] = windows;
  await alice.page.fill("#name", "alice");
  await alice.page.click("#wave");
  for (const { name, page } of windows) {
    await page.waitForFunction(
      () => [...document.querySelectorAll("#waves li")].some((li) => li.textContent === "alice waved"),
      null,
      WAIT,
    );
    console.log(`ok: ${name}'s window shows alice's wave`);
  }
  // Each window showed it once.
  for (const { name, page } of [alice, bob]) {
    const count = await page.locator("#waves li").count();
    if (count !== 1) throw new Error(`${name}'s window shows ${count} waves`);
  }
} catch (e) {
  failed = true;
  console.error(`hello: ${e.stack || e}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
