// The live admin page of examples/dashboard in Chromium: the admin opens /_sync/admin; alice, in her own
// browser context, adds a task on the dashboard (bob is there too); the admin page shows the trigger (route,
// sync, delivered count) without a reload, and the time it took to appear is printed. bob, not an admin, gets
// 403 for the page.
//
//   node admin.mjs <base-url> <screenshot-dir>
//
// Run by examples/dashboard/tests/browser.rs. Every wait has a timeout; nothing sleeps to wait.

import { launch, WAIT } from "./chromium.mjs";
import { mkdirSync } from "node:fs";

const [base, shots] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });

const browser = await launch();
const live = (page) =>
  page.waitForFunction(() => document.documentElement.dataset.syncState === "open", null, WAIT);

/** A user in their own browser context, logged in: their page, on /dashboard. */
async function user(name, team, viewport = { width: 900, height: 640 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] page error: ${e}`));
  await page.goto(`${base}/login`);
  await page.fill("input[name=name]", name);
  await page.selectOption("select[name=team]", team);
  await Promise.all([page.waitForURL("**/dashboard", WAIT), page.click("button")]);
  await live(page);
  return page;
}

const admin = await user("admin", "blue", { width: 1400, height: 1000 });
await Promise.all([admin.waitForURL("**/_sync/admin", WAIT), admin.click("nav a[href='/_sync/admin']")]);
await live(admin);
// The first snapshot fills the page.
await admin.waitForFunction(() => document.documentElement.dataset.updated, null, WAIT);
const loads = [];
admin.on("load", () => loads.push(admin.url()));
console.log("ok: the admin opened /_sync/admin from the dashboard's navigation, live");

const alice = await user("alice", "red");
const bob = await user("bob", "red");
// Both on /dashboard show up in the routes table.
await admin.waitForFunction(
  () => [...document.querySelectorAll("#routes tr[data-route='/dashboard'] td:nth-child(2)")].some((td) => td.textContent === "2"),
  null,
  WAIT,
);

const fired = Date.now();
await alice.fill("#add-task input[name=text]", "Check the admin page");
await alice.click("#add-task button");
const row = "#triggers tbody tr[data-trigger]";
await admin.waitForFunction(
  (row) =>
    [...document.querySelectorAll(row)].some(
      (tr) => tr.querySelector(".route").textContent === "/dashboard" && tr.querySelector(".sync").textContent === "refreshData",
    ),
  row,
  { timeout: 5000 },
);
const took = Date.now() - fired;
console.log(`admin page: alice's trigger appeared ${took} ms after she clicked Add`);
const shown = await admin.evaluate((row) => {
  const tr = [...document.querySelectorAll(row)].find((tr) => tr.querySelector(".sync").textContent === "refreshData");
  const text = (cls) => tr.querySelector(`.${cls}`).textContent;
  return { matched: text("matched"), passed: text("passed"), delivered: text("delivered"), failed: text("failed") };
}, row);
if (JSON.stringify(shown) !== JSON.stringify({ matched: "2", passed: "2", delivered: "2", failed: "0" })) {
  throw new Error(`the trigger's outcome is shown as ${JSON.stringify(shown)}; expected alice and bob (2 delivered)`);
}
if (loads.length) throw new Error(`the admin page reloaded: ${loads.join(", ")}`);
console.log(`ok: the admin page showed alice's trigger on /dashboard (refreshData, 2 delivered) without a reload, in ${took} ms`);

// The new task reached bob's page too, and bob may not see the admin page.
await bob.waitForFunction(() => document.querySelector("#tasks")?.textContent.includes("Check the admin page"), null, WAIT);
const refused = await bob.goto(`${base}/_sync/admin`);
if (refused.status() !== 403) throw new Error(`bob got ${refused.status()} for the admin page`);
const reason = await refused.text();
if (!reason.includes("admins only")) throw new Error(`bob's 403 says: ${reason}`);
console.log(`ok: bob (not an admin) gets 403 for /_sync/admin: "${reason}"`);

await admin.screenshot({ path: `${shots}/admin.png`, fullPage: true });
await browser.close();
