// Browser end-to-end test of examples/dashboard, in real headless Chromium.
//
//   node e2e.mjs <base-url> <screenshot-dir> [websocket|sse]
//
// With `sse`, every scenario runs over SSE: alice and carol are told to use it; bob and homer are on a
// "network" where WebSockets cannot open, and their clients fall back to it by themselves.
//
// Run by examples/dashboard/tests/browser.rs, which starts the server and restarts it when this script
// prints "RESTART" (answering "RESTARTED" on stdin). Every wait has a timeout; nothing sleeps to wait.

import { launch, WAIT } from "./chromium.mjs";
import { createInterface } from "node:readline";
import { mkdirSync } from "node:fs";

const [base, shots, transport = "websocket"] = process.argv.slice(2);
const shot = (name) => `${shots}/${transport === "sse" ? "sse-" : ""}${name}.png`;
mkdirSync(shots, { recursive: true });
const stdin = createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();

function step(text) {
  console.log(`browser-e2e (${transport}): ${text}`);
}

const browser = await launch();

/**
 * Wait until the page's sync connection is open (surviving page reloads in between). With `fresh`, only a
 * page loaded since `window.old` was set counts: one the client is about to reload (after `resync`) does not.
 */
async function live(page, fresh = false) {
  for (let i = 0; i < 30; i++) {
    try {
      await page.waitForFunction(
        (fresh) => document.documentElement.dataset.syncState === "open" && !(fresh && window.old),
        fresh,
        WAIT,
      );
      return;
    } catch (e) {
      if (!String(e).includes("context was destroyed") && !String(e).includes("navigat")) throw e;
      await page.waitForLoadState("load", WAIT);
    }
  }
  throw new Error("the page never went live");
}

/** A page on which WebSockets cannot open, as behind a proxy that refuses the upgrade. */
function blockWebSockets() {
  window.WebSocket = class extends EventTarget {
    constructor() {
      super();
      this.readyState = 3;
      setTimeout(() => this.onclose && this.onclose({ code: 1006 }), 0);
    }
    send() {
      throw new Error("WebSockets are blocked here");
    }
    close() {}
  };
}

/** A user in their own browser context (own cookies), logged in, on `path`. */
async function user(name, team, path, sseBy = "option") {
  const context = await browser.newContext({ viewport: { width: 900, height: 640 } });
  if (transport === "sse" && sseBy === "option") {
    await context.addInitScript(() => (window.syncOptions = { transport: "sse" }));
  } else if (transport === "sse") {
    await context.addInitScript(blockWebSockets);
  }
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] page error: ${e}`));
  await page.goto(`${base}/login`);
  await page.fill("input[name=name]", name);
  await page.selectOption("select[name=team]", team);
  await Promise.all([page.waitForURL("**/dashboard", WAIT), page.click("button")]);
  if (path !== "/dashboard") await page.goto(`${base}${path}`);
  await live(page);
  const used = await page.evaluate(() => window.syncClient.transport);
  if (used !== transport) throw new Error(`${name} is on ${used}, expected ${transport}`);
  // Record the path of every reaction the page applies.
  await page.evaluate(() => {
    window.seen = [];
    const apply = window.syncClient.apply.bind(window.syncClient);
    window.syncClient.apply = (r, meta) => {
      if (meta) window.seen.push(meta.path);
      apply(r, meta);
    };
  });
  return page;
}

const tasks = (page) => page.locator("#tasks").innerText();

async function addTask(page, text) {
  await page.fill("#add-task input", text);
  await page.click("#add-task button");
  await page.waitForFunction((t) => document.querySelector("#tasks").innerText.includes(t), text, WAIT);
}

async function post(page, text) {
  await page.fill("form[data-sync] input", text);
  await page.click("form[data-sync] button");
}

const alice = await user("alice", "red", "/dashboard");
const bob = await user("bob", "red", "/dashboard", "fallback");
const carol = await user("carol", "blue", "/dashboard");
const homer = await user("homer", "red", "/home", "fallback");
step(`four users logged in and live${transport === "sse" ? " (bob and homer fell back to SSE)" : ""}`);

// alice's action updates bob's page without a reload.
await addTask(alice, "Browser task one");
await bob.waitForFunction(() => document.querySelector("#tasks").innerText.includes("Browser task one"), null, WAIT);
step("bob sees alice's task without a reload");

// carol (team blue) is filtered out by the server: her next update is her own, and alice's never came.
await addTask(carol, "Blue marker");
if ((await tasks(carol)).includes("Browser task one")) throw new Error("carol saw team red's task");
const carolSeen = await carol.evaluate(() => window.seen);
if (carolSeen.length !== 1) throw new Error(`carol got ${carolSeen.length} reactions, expected only her own`);
step("carol, on another team, saw nothing of it");

// homer on /home saw nothing of /dashboard's update; /home's own refreshData reaches him.
await post(homer, "Hello from home");
await homer.waitForFunction(() => document.querySelector("#wall").innerText.includes("homer Hello from home"), null, WAIT);
const homerSeen = await homer.evaluate(() => window.seen);
if (homerSeen.join() !== "/home") throw new Error(`homer got ${homerSeen}`);
step("homer on /home got only /home's refreshData");

// SPA navigation moves bob's presence: after pushState to /home he gets /home's updates, not /dashboard's.
await bob.evaluate(() => { window.seen = []; history.pushState(null, "", "/home"); });
await post(homer, "Second post");
await bob.waitForFunction(() => window.seen.length === 1, null, WAIT);
await addTask(alice, "Task bob must not see");
await post(homer, "Third post");
await bob.waitForFunction(() => window.seen.length === 2, null, WAIT);
const bobSeen = await bob.evaluate(() => window.seen);
if (bobSeen.join() !== "/home,/home") throw new Error(`after navigating, bob got ${bobSeen}`);
step("SPA navigation moved bob's presence to /home");

await bob.goto(`${base}/dashboard`);
await live(bob);

// Leaving a page takes its connection off the route at once (a WebSocket's close frame; over SSE, the
// client's goodbye beacon), instead of after the 2-minute grace window kept for resumes.
const matched = () =>
  alice.evaluate(
    () =>
      new Promise((resolve) =>
        window.syncClient.request({ name: "refreshData", data: { team: "red" }, onResult: (r) => resolve(r.matched) }),
      ),
  );
async function until(what, test) {
  const deadline = Date.now() + WAIT.timeout;
  while (!(await test())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
const before = await matched();
const extra = await carol.context().newPage();
await extra.goto(`${base}/dashboard`);
await live(extra);
await until("the extra tab on /dashboard", async () => (await matched()) === before + 1);
await extra.goto("about:blank");
await until("the left tab off /dashboard", async () => (await matched()) === before);
await extra.close();
step("a tab that leaves is off the route at once");
await alice.screenshot({ path: shot("alice-dashboard"), fullPage: true });
await bob.screenshot({ path: shot("bob-dashboard"), fullPage: true });
await carol.screenshot({ path: shot("carol-dashboard"), fullPage: true });
await homer.screenshot({ path: shot("homer-home"), fullPage: true });

// The server restarts: pages show "reconnecting", come back by themselves, and updates flow again.
// The new server does not know the old connections: the clients are told to resync, and reload.
for (const page of [alice, bob]) await page.evaluate(() => (window.old = true));
console.log("RESTART");
const answer = await lines.next();
if (answer.value !== "RESTARTED") throw new Error(`expected RESTARTED, got ${answer.value}`);
for (const page of [alice, bob]) await live(page, true);
step("both pages reconnected (and reloaded their data) after the restart");
await addTask(alice, "After the restart");
await bob.waitForFunction(() => document.querySelector("#tasks").innerText.includes("After the restart"), null, WAIT);
step("updates flow again after the restart");
await bob.screenshot({ path: shot("bob-after-restart"), fullPage: true });

await browser.close();
stdin.close();
step("all browser scenarios passed");
