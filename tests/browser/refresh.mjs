// Credentials that expire, in real Chromium, over both transports: a page whose client has `refreshToken`
// refreshes its credential over the live connection and is never closed; a page without one is closed
// with 4001 and told `sync:expired`.
//
//   node refresh.mjs <base-url of a fixture server>
//
// Run by tests/fixture/tests/browser.rs. The fixture's tokens are `name:team[:ms]`, `ms` being how long
// the credential lives. Every wait has a timeout.

import { launch, WAIT } from "./chromium.mjs";

const [base] = process.argv.slice(2);

const browser = await launch();

/** A page of the fixture's (`GET /browser`) whose client is built from `query`. */
async function page(name, query) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] page error: ${e}`));
  page.on("console", (m) => console.error(`[${name}] console: ${m.text()}`));
  await page.goto(`${base}/browser?${new URLSearchParams(query)}`);
  await page.waitForFunction(() => window.client && window.client.state === "open", null, WAIT);
  return page;
}

let failed = false;
function check(ok, what) {
  console.log(`${ok ? "ok" : "FAILED"}: ${what}`);
  if (!ok) failed = true;
}

for (const transport of ["websocket", "sse"]) {
  // Lives 1.5 s; refreshed 1.2 s in (a fifth before), for a credential of a minute.
  const kept = await page(`kept-${transport}`, { transport, token: "eve:red:1500", renew: "eve:red:60000" });
  // Lives 0.8 s, and nothing can renew it.
  const lapsed = await page(`lapsed-${transport}`, { transport, token: "zoe:red:800" });

  await lapsed.waitForFunction(() => log.includes("expired"), null, WAIT);
  const lapsedLog = await lapsed.evaluate(() => log);
  check(
    lapsedLog.at(-1) === "expired" && lapsedLog.includes("closed"),
    `${transport}: without refreshToken the page is closed and told sync:expired (${lapsedLog})`,
  );

  // Past the first credential's end: the page refreshed once and its connection never dropped.
  await kept.waitForFunction(() => window.refreshes >= 1, null, WAIT);
  // What is tested is that the old credential's end (1.5 s after connecting) passes without a close: let
  // it pass, with room to spare.
  await kept.waitForTimeout(1000);
  const keptLog = await kept.evaluate(() => ({ log, refreshes, state: client.state }));
  check(
    keptLog.state === "open" && keptLog.refreshes === 1 && !keptLog.log.includes("reconnecting"),
    `${transport}: with refreshToken the credential is refreshed over the live connection (${JSON.stringify(keptLog)})`,
  );
}

await browser.close();
process.exit(failed ? 1 : 0);
