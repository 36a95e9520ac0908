// The browser client's request promise in real Chromium, against the fixture server, over both transports:
// it resolves with the outcome, rejects with a `SyncRequestError` carrying the server's code, reports an
// error nobody handles on the console (and only then), reports a declarative (`data-sync`) request's error
// once, and settles requests still pending when the client closes.
//
//   node requests.mjs <base-url of a fixture server>
//
// Run by tests/fixture/tests/browser.rs. The page is the fixture's `/browser/module`, moved to `/dashboard`
// (a route of the fixture's with `counter`, which every user on it receives, and `refreshData`, whose gate
// refuses the team `banned`), with two `data-sync` buttons added. "Nothing reported" is checked without
// sleeping: after the requests that must not be reported, an unhandled one must be, and reports come in
// order. Every wait has a timeout.

import { launch, WAIT } from "./chromium.mjs";

const [base] = process.argv.slice(2);

const browser = await launch();

let failed = false;
function check(ok, what) {
  console.log(`${ok ? "ok" : "FAILED"}: ${what}`);
  if (!ok) failed = true;
}

const BUTTONS = `<button id="ok" data-sync="counter" data-sync-data='{"n":5}'>ok</button>
<button id="bad" data-sync="declaredNope">bad</button>`;

/**
 * /dashboard for `token` over `transport`, live; `reports` collects what the page reports: uncaught errors
 * (unhandled rejections among them) as `uncaught: <name>: <message>`, console errors as `console: <text>`.
 */
async function dashboard(token, transport) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const tab = { page, reports: [], waiters: [] };
  const report = (text) => {
    console.error(`[${token} ${transport}] ${text}`);
    tab.reports.push(text);
    for (const wake of tab.waiters.splice(0)) wake();
  };
  page.on("pageerror", (e) => report(`uncaught: ${e.name}: ${e.message}`));
  page.on("console", (m) => m.type() === "error" && report(`console: ${m.text()}`));
  await page.goto(`${base}/browser/module?${new URLSearchParams({ path: "/dashboard", token, transport })}`);
  await page.waitForFunction(() => document.documentElement.dataset.syncState === "open", null, WAIT);
  await page.evaluate((html) => document.body.insertAdjacentHTML("beforeend", html), BUTTONS);
  return tab;
}

/** Wait until a report mentions `what`; returns every report so far. */
async function reported(tab, what) {
  const deadline = Date.now() + WAIT.timeout;
  while (!tab.reports.some((r) => r.includes(what))) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`nothing reported ${what}: ${JSON.stringify(tab.reports)}`);
    let timer;
    await new Promise((wake) => {
      tab.waiters.push(wake);
      timer = setTimeout(wake, left);
    });
    clearTimeout(timer);
  }
  return [...tab.reports];
}

/** The rejection of `syncRequest(request)` in the page, as plain data. */
const rejection = (page, request) =>
  page.evaluate(
    (request) =>
      m.syncRequest(request).then(
        (outcome) => ({ resolved: outcome }),
        (e) => ({ isError: e instanceof m.SyncRequestError, name: e.name, code: e.code, syncName: e.syncName, message: e.message }),
      ),
    request,
  );

for (const transport of ["websocket", "sse"]) {
  const ann = await dashboard("ann:red", transport);

  const outcome = await ann.page.evaluate(() => m.syncRequest({ name: "counter", data: { n: 1 } }));
  check(
    JSON.stringify(outcome) === JSON.stringify({ matched: 1, passed: 1, delivered: 1, failed: 0 }),
    `${transport}: the promise resolves with the outcome (${JSON.stringify(outcome)})`,
  );

  const unknown = await rejection(ann.page, { name: "nope", data: null });
  check(
    unknown.isError && unknown.name === "SyncRequestError" && unknown.code === "unknown_name" &&
      unknown.syncName === "nope" && unknown.message.startsWith('sync "nope" failed: unknown_name'),
    `${transport}: an unknown name rejects with SyncRequestError unknown_name (${JSON.stringify(unknown)})`,
  );
  const bad = await rejection(ann.page, { name: "counter", data: { n: "many" } });
  check(
    bad.isError && bad.code === "bad_data" && bad.syncName === "counter" && bad.message.includes("bad_data"),
    `${transport}: data of the wrong shape rejects with bad_data (${JSON.stringify(bad)})`,
  );

  // Ignored successes, a caught error and one given to onResult are not reported; the last one is.
  const onResult = await ann.page.evaluate(async () => {
    m.syncRequest({ name: "counter", data: { n: 2 } });
    m.syncRequest({ name: "caughtNope" }).catch(() => {});
    const result = new Promise((resolve) => m.syncRequest({ name: "onResultNope", onResult: resolve }));
    m.syncRequest({ name: "unhandledNope" });
    return result;
  });
  check(
    onResult.ok === false && onResult.code === "unknown_name",
    `${transport}: onResult gets the error (${JSON.stringify(onResult)})`,
  );
  let reports = await reported(ann, "unhandledNope");
  const unhandled = reports.filter((r) => r.includes("unhandledNope"));
  check(
    unhandled.length === 1 &&
      unhandled[0].startsWith('uncaught: SyncRequestError: sync "unhandledNope" failed: unknown_name') &&
      !reports.some((r) => /counter|caughtNope|onResultNope/.test(r)),
    `${transport}: only the error nobody handled is reported, readably (${JSON.stringify(reports)})`,
  );

  // Declarative requests: a success is not reported, an error once, on the console.
  await ann.page.click("#ok");
  await ann.page.click("#bad");
  await ann.page.evaluate(() => void m.syncRequest({ name: "afterClicks" }));
  reports = await reported(ann, "afterClicks");
  const declared = reports.filter((r) => r.includes("declaredNope"));
  check(
    declared.length === 1 &&
      declared[0] === 'console: SyncRequestError: sync "declaredNope" failed: unknown_name (no route defines a sync named `declaredNope`)' &&
      !reports.some((r) => r.includes("counter")),
    `${transport}: a data-sync button's error is reported once on the console (${JSON.stringify(declared)})`,
  );

  const banned = await dashboard("bob:banned", transport);
  const gate = await rejection(banned.page, { name: "refreshData", data: { team: "red", note: "hi" } });
  check(
    gate.isError && gate.code === "gate_refused" && gate.message.includes("your team may not send refreshData"),
    `${transport}: a gate's refusal rejects with gate_refused and its message (${JSON.stringify(gate)})`,
  );

  // Closing for good settles what is pending, and what comes after.
  const closed = await ann.page.evaluate(async () => {
    const settled = (p) => p.then(() => "resolved", (e) => e.code);
    const inFlight = settled(m.syncRequest({ name: "counter", data: { n: 3 } }));
    m.sync().close();
    const after = settled(m.syncRequest({ name: "counter", data: { n: 4 } }));
    return [await inFlight, await after];
  });
  check(
    JSON.stringify(closed) === '["closed","closed"]',
    `${transport}: closing rejects a pending request, and any later one, with closed (${closed})`,
  );
  await ann.page.context().close();
  await banned.page.context().close();
}

await browser.close();
process.exit(failed ? 1 : 0);
