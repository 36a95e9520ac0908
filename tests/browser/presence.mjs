// Who is here, across two processes of examples/dashboard behind one Redis: every page's "Here now" list
// (the layout's declarative data-sync-presence markup) shows the users on that page, whichever process
// serves them, each once however many tabs they have open.
//
//   node presence.mjs <base-url-of-node-a> <base-url-of-node-b> <screenshot-dir>
//
// Run by examples/dashboard/tests/multinode.rs, which starts Redis and both processes (sharing one SQLite
// file). Three users in their own browser contexts: alice (two tabs) and carol on node A, bob on node B.
// Every wait has a timeout; nothing sleeps to wait.

import { launch, WAIT } from "./chromium.mjs";
import { mkdirSync } from "node:fs";

const [nodeA, nodeB, shots] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });

function step(text) {
  console.log(`browser-presence: ${text}`);
}

const browser = await launch();

const live = (page) =>
  page.waitForFunction(() => document.documentElement.dataset.syncState === "open", null, WAIT);

/** A tab of `context` on `url`, live. */
async function tab(context, name, url) {
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] page error: ${e}`));
  await page.goto(url);
  await live(page);
  return page;
}

/** A user in their own browser context, logged in on `base`: their first tab, on /dashboard. */
async function user(base, name, team) {
  const context = await browser.newContext({ viewport: { width: 900, height: 640 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] page error: ${e}`));
  await page.goto(`${base}/login`);
  await page.fill("input[name=name]", name);
  await page.selectOption("select[name=team]", team);
  await Promise.all([page.waitForURL("**/dashboard", WAIT), page.click("button")]);
  await live(page);
  return page;
}

/** What a page's "Here now" shows: the listed users (by `data-user`, in page order) and the count. */
const here = (page) =>
  page.evaluate(() => ({
    users: [...document.querySelectorAll("[data-sync-presence] > li[data-user]")].map((li) => li.dataset.user),
    count: document.querySelector("[data-sync-presence-count]").textContent,
  }));

/**
 * Wait until `page` lists exactly `users` (each once, in any order) and counts them; then check that each
 * one shows their name, their team and an avatar coloured by it, as `teams` has them.
 */
async function lists(label, page, teams) {
  const want = Object.keys(teams).sort();
  try {
    await page.waitForFunction(
      (want) => {
        const users = [...document.querySelectorAll("[data-sync-presence] > li[data-user]")].map((li) => li.dataset.user);
        const count = document.querySelector("[data-sync-presence-count]").textContent;
        return JSON.stringify(users.sort()) === JSON.stringify(want) && count === String(want.length);
      },
      want,
      WAIT,
    );
  } catch (e) {
    throw new Error(`${label}: expected ${want.join(", ")} (${want.length}), got ${JSON.stringify(await here(page))}: ${e}`);
  }
  for (const [user, team] of Object.entries(teams)) {
    const shown = await page.evaluate((user) => {
      const li = document.querySelector(`[data-sync-presence] > li[data-user="${user}"]`);
      const fields = [...li.querySelectorAll("[data-sync-field]")].map((el) => [el.dataset.syncField, el.textContent]);
      return { fields, avatar: li.querySelector(".avatar").dataset.team };
    }, user);
    const expected = [["name", user], ["name", user], ["team", team]];
    if (JSON.stringify(shown.fields) !== JSON.stringify(expected) || shown.avatar !== team) {
      throw new Error(`${label}: ${user} is shown as ${JSON.stringify(shown)}`);
    }
  }
}

// alice has two tabs on /dashboard on node A; bob is on /dashboard on node B; carol is on /home on node A.
const alice = await user(nodeA, "alice", "red");
const aliceAgain = await tab(alice.context(), "alice", `${nodeA}/dashboard`);
const bob = await user(nodeB, "bob", "red");
const carol = await user(nodeA, "carol", "blue");
await carol.goto(`${nodeA}/home`);
await live(carol);
step("alice (two tabs) and carol on node A, bob on node B, all live");

const dashboards = { "alice, node A": alice, "alice's second tab, node A": aliceAgain, "bob, node B": bob };
for (const [label, page] of Object.entries(dashboards)) await lists(label, page, { alice: "red", bob: "red" });
await lists("carol on /home", carol, { carol: "blue" });
step("/dashboard lists alice once and bob across both nodes (2); /home lists carol (1)");
await carol.screenshot({ path: `${shots}/presence-home-carol-node-a.png`, fullPage: true });

// carol follows the navigation's link from /home to /dashboard: she moves in every list.
await Promise.all([carol.waitForURL("**/dashboard", WAIT), carol.click("nav a[href='/dashboard']")]);
await live(carol);
dashboards["carol, node A"] = carol;
const three = { alice: "red", bob: "red", carol: "blue" };
for (const [label, page] of Object.entries(dashboards)) await lists(label, page, three);
step("carol moved from /home to /dashboard: every dashboard, on both nodes, lists three");
await alice.screenshot({ path: `${shots}/presence-dashboard-alice-node-a.png`, fullPage: true });
await bob.screenshot({ path: `${shots}/presence-dashboard-bob-node-b.png`, fullPage: true });

// alice closes one of her tabs: she is still here. bob closes his only one: he leaves the lists on node A.
await aliceAgain.close();
await bob.close();
delete dashboards["alice's second tab, node A"];
delete dashboards["bob, node B"];
for (const [label, page] of Object.entries(dashboards)) await lists(label, page, { alice: "red", carol: "blue" });
step("alice closed one of two tabs and stays; bob closed his last tab and left the lists on node A");
await carol.screenshot({ path: `${shots}/presence-dashboard-after-bob-left.png`, fullPage: true });

await browser.close();
step("all presence scenarios passed");
