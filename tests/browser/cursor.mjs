// Nothing lost between render and live, or across a connection the server forgot, in real Chromium over
// both transports (SPEC 10):
//
// * render gap: a page rendered with its path's cursor (`<meta name="sync-cursor">`) connects only after a
//   trigger on that path; the reaction arrives once, with no resync;
// * reconnect with a cursor: the page says `bye` (the server forgets the connection, so no resume can bring
//   it back, as when the next connect reaches another node), triggers fire while it is away, and it
//   reconnects: they all arrive once and in order, caught up from the cursor, with no resync.
//
//   node cursor.mjs <base-url of a fixture server>
//
// Run by tests/fixture/tests/browser.rs. The fixture's `GET /browser/cursor?path=/dashboard` renders the
// page (its client starts when the test calls `start()`); `POST /dashboard/save?team=…&note=…` triggers
// `refreshData` on /dashboard for that team, as a page handler does. Every wait has a timeout.

import { launch, WAIT } from "./chromium.mjs";

const [base] = process.argv.slice(2);
const CURSOR = /^[0-9A-Za-z_-]+:[0-9]+$/;

const browser = await launch();

let failed = false;
function check(ok, what) {
  console.log(`${ok ? "ok" : "FAILED"}: ${what}`);
  if (!ok) failed = true;
}

/** Trigger `refreshData` on /dashboard for team red, carrying `note`; resolves once it was fanned out. */
async function trigger(note) {
  const r = await fetch(`${base}/dashboard/save?${new URLSearchParams({ team: "red", note })}`, { method: "POST" });
  if (!r.ok) throw new Error(`POST /dashboard/save: HTTP ${r.status}`);
  return r.json();
}

/**
 * The fixture's /dashboard rendered for `user` of team red, its client not started, and the query of every
 * connect it makes from then on.
 */
async function dashboard(user, transport) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${user}] page error: ${e}`));
  page.on("console", (m) => console.error(`[${user}] console: ${m.text()}`));
  const connects = [];
  page.on("websocket", (ws) => connects.push(new URL(ws.url()).searchParams));
  page.on("request", (r) => {
    const url = new URL(r.url());
    if (r.method() === "GET" && url.pathname === "/_sync/sse") connects.push(url.searchParams);
  });
  const query = new URLSearchParams({ path: "/dashboard", transport, token: `${user}:red` });
  await page.goto(`${base}/browser/cursor?${query}`);
  await page.waitForFunction(() => typeof window.start === "function", null, WAIT);
  return { context, page, connects };
}

/** Until the page has the reaction carrying `note`. */
const arrived = (page, note) => page.waitForFunction((note) => got.some(([n]) => n === note), note, WAIT);
const state = (page) => page.evaluate(() => ({ got, log, cursor: client.cursor() }));
const notes = (got) => got.map(([note]) => note).join(", ");

for (const transport of ["websocket", "sse"]) {
  // Render gap.
  {
    const { context, page, connects } = await dashboard(`gap-${transport}`, transport);
    const rendered = await page.evaluate(() => document.querySelector('meta[name="sync-cursor"]')?.content);
    await trigger(`gap-${transport}`);
    await page.evaluate(() => start());
    await page.waitForFunction(() => client.state === "open", null, WAIT);
    // A trigger after connecting: what the catch-up owed comes before it, so once it is here nothing more
    // is owed, and a duplicate would have shown.
    await trigger(`live-${transport}`);
    await arrived(page, `live-${transport}`);
    const { got, log, cursor } = await state(page);
    check(
      CURSOR.test(rendered ?? "") && connects[0]?.get("cursor") === rendered &&
        connects[0]?.get("path") === "/dashboard",
      `${transport}: the page connects from the cursor it was rendered with (${rendered}; sent ${connects[0]})`,
    );
    check(
      notes(got) === `gap-${transport}, live-${transport}` && !log.includes("resync") &&
        cursor?.path === "/dashboard" && cursor?.cursor === got.at(-1)[1],
      `${transport}: a trigger between render and connect arrives once, with no resync ` +
        `(got ${notes(got)}; log ${log}; cursor ${JSON.stringify(cursor)})`,
    );
    await context.close();
  }

  // Reconnect with a cursor.
  {
    const { context, page, connects } = await dashboard(`cut-${transport}`, transport);
    await page.evaluate(() => start());
    await page.waitForFunction(() => client.state === "open", null, WAIT);
    await trigger(`before-${transport}`);
    await arrived(page, `before-${transport}`);
    // Hold the reconnect until the test lets it go, then leave.
    await page.evaluate(() => {
      client.open = () => (window.reopen = () => (delete client.open, client.open()));
      client.conn.send('{"t":"bye"}');
    });
    await page.waitForFunction(() => window.reopen, null, WAIT);
    const held = await page.evaluate(() => client.cursor());
    const away = [0, 1, 2, 3, 4].map((i) => `away-${transport}-${i}`);
    for (const note of away) await trigger(note);
    const connected = connects.length;
    await page.evaluate(() => reopen());
    await page.waitForFunction(() => client.state === "open", null, WAIT);
    await trigger(`after-${transport}`);
    await arrived(page, `after-${transport}`);
    const { got, log } = await state(page);
    const again = connects[connected];
    const last = got.find(([note]) => note === `before-${transport}`)?.[1];
    const kept = held?.path === "/dashboard" && CURSOR.test(last ?? "") && held.cursor === last;
    const sent = again?.get("cursor") === last && again?.has("resume");
    const fresh = !log.includes("hello:resumed") && log.filter((l) => l === "hello:new").length === 2;
    check(
      kept && sent && fresh,
      `${transport}: the reconnect sends the last reaction's cursor with its resume, and the server, which ` +
        `forgot the connection, answers with a new one (reaction's ${last}, client's ${JSON.stringify(held)}; ` +
        `sent ${again}; log ${log})`,
    );
    const expected = [`before-${transport}`, ...away, `after-${transport}`].join(", ");
    check(
      notes(got) === expected && !log.includes("resync"),
      `${transport}: triggers while the connection was gone arrive once and in order, with no resync ` +
        `(got ${notes(got)}; log ${log})`,
    );
    await context.close();
  }
}

await browser.close();
process.exit(failed ? 1 : 0);
