// The browser client across cut connections: 1,000 reactions arrive exactly once, in order.
//
//   node resume.mjs <base-url-through-a-cutting-proxy> [websocket|sse]
//
// Run by examples/dashboard/tests/browser.rs, which triggers the 1,000 posts and cuts the proxied
// connection twice after this script prints "READY"; the script waits for all of them and checks.

import { launch } from "./chromium.mjs";

const [base, transport = "websocket"] = process.argv.slice(2);
const browser = await launch();
const context = await browser.newContext();
if (transport === "sse") await context.addInitScript(() => (window.syncOptions = { transport: "sse" }));
const page = await context.newPage();
page.on("pageerror", (e) => console.error(`page error: ${e}`));
await page.goto(`${base}/login`);
await page.fill("input[name=name]", "dana");
await Promise.all([page.waitForURL("**/dashboard"), page.click("button")]);
await page.goto(`${base}/home`);
await page.waitForFunction(() => document.documentElement.dataset.syncState === "open", null, { timeout: 15000 });
// The test cuts the connection a second time only once the page is back from the first cut.
await page.exposeFunction("reportState", (s) => console.log(`STATE ${s}`));
await page.evaluate(() => {
  window.got = [];
  window.resyncs = 0;
  window.states = [];
  window.syncClient.onState((s) => {
    window.states.push(s);
    window.reportState(s);
  });
  // Count resyncs instead of reloading, so that the count survives.
  window.addEventListener("sync:resync", (e) => { window.resyncs++; e.preventDefault(); });
  const apply = window.syncClient.apply.bind(window.syncClient);
  window.syncClient.apply = (r, meta) => {
    window.got.push([meta.seq, r.html]);
    apply(r, meta);
  };
});
const used = await page.evaluate(() => window.syncClient.transport);
if (used !== transport) throw new Error(`the page is on ${used}, expected ${transport}`);
console.log("READY");

try {
  await page.waitForFunction(() => window.got.length >= 1000, null, { timeout: 60000 });
} catch (e) {
  const seen = await page.evaluate(() => ({ n: window.got.length, last: window.got.at(-1), resyncs: window.resyncs, states: window.states }));
  console.error(`timed out waiting for 1000 reactions: ${JSON.stringify(seen)}`);
  await browser.close();
  process.exit(1);
}
const { got, resyncs, states } = await page.evaluate(() => ({ got: window.got, resyncs: window.resyncs, states: window.states }));
const problems = [];
if (got.length !== 1000) problems.push(`${got.length} reactions, expected 1000`);
got.forEach(([seq, html], i) => {
  if (seq !== got[0][0] + i) problems.push(`reaction ${i} has seq ${seq}`);
  if (!html.includes(`> ${i}</li>`)) problems.push(`reaction ${i} is ${html}`);
});
if (resyncs !== 0) problems.push(`${resyncs} resyncs`);
const reconnects = states.filter((s) => s === "reconnecting").length;
if (reconnects < 2) problems.push(`reconnected ${reconnects} times, expected 2 cuts`);
await browser.close();
if (problems.length) {
  console.error(problems.slice(0, 10).join("\n"));
  process.exit(1);
}
console.log(`browser-resume: 1000 reactions exactly once and in order across ${reconnects} cuts`);
