// Two processes of examples/dashboard behind one Redis, one browser on each: they stay in sync.
//
//   node multinode.mjs <base-url-of-node-a> <base-url-of-node-b> <screenshot-dir>
//
// Run by examples/dashboard/tests/multinode.rs, which starts Redis and both processes (sharing one SQLite
// file). Every wait has a timeout; nothing sleeps to wait.

import { launch, WAIT } from "./chromium.mjs";
import { mkdirSync } from "node:fs";

const [nodeA, nodeB, shots] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });

const browser = await launch();

/** A user in their own browser context, logged in on `base`, live on /dashboard. */
async function user(base, name, team) {
  const context = await browser.newContext({ viewport: { width: 900, height: 640 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] page error: ${e}`));
  await page.goto(`${base}/login`);
  await page.fill("input[name=name]", name);
  await page.selectOption("select[name=team]", team);
  await Promise.all([page.waitForURL("**/dashboard", WAIT), page.click("button")]);
  await page.waitForFunction(() => document.documentElement.dataset.syncState === "open", null, WAIT);
  return page;
}

async function addTask(page, text) {
  await page.fill("#add-task input", text);
  await page.click("#add-task button");
  await page.waitForFunction((t) => document.querySelector("#tasks").innerText.includes(t), text, WAIT);
}

const shows = (page, text) =>
  page.waitForFunction((t) => document.querySelector("#tasks").innerText.includes(t), text, WAIT);

const alice = await user(nodeA, "alice", "red");
const bob = await user(nodeB, "bob", "red");
console.log("browser-multinode: alice on node A, bob on node B, both live");

await addTask(alice, "Added on node A");
await shows(bob, "Added on node A");
console.log("browser-multinode: bob (node B) sees alice's task (node A) without a reload");

await addTask(bob, "Added on node B");
await shows(alice, "Added on node B");
console.log("browser-multinode: alice (node A) sees bob's task (node B) without a reload");

await alice.screenshot({ path: `${shots}/multinode-alice-node-a.png`, fullPage: true });
await bob.screenshot({ path: `${shots}/multinode-bob-node-b.png`, fullPage: true });
await browser.close();
