// `update_list` reactions through the real TanStack Query (`@tanstack/query-core`, from node_modules) in
// real Chromium, against the fixture server: prepend / append / replace / remove on plain queries (every
// entry under the key, the list at a field or the entry itself) and infinite queries, an entry of the wrong
// shape left alone with a warning (the reactions after it still applied), an entry not in the cache not
// created, and the `sync:query` event without an adapter.
//
//   node query-cache.mjs <base-url of a fixture server>
//
// Run by tests/fixture/tests/browser.rs. The page is the fixture's `/browser/module`, moved to `/lists`,
// whose `listChange` sync applies the list operation its data describes and then sends a `listChanged`
// event: the test waits for that event, so the whole reaction was applied. Every wait has a timeout.

import { launch, WAIT } from "./chromium.mjs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const [base] = process.argv.slice(2);
const QUERY_CORE = join(dirname(fileURLToPath(import.meta.url)), "node_modules/@tanstack/query-core/build/modern");

const browser = await launch();

let failed = false;
function check(ok, what) {
  console.log(`${ok ? "ok" : "FAILED"}: ${what}`);
  if (!ok) failed = true;
}

const page = await (await browser.newContext()).newPage();
const warnings = [];
page.on("pageerror", (e) => console.error(`page error: ${e}`));
page.on("console", (m) => {
  console.error(`console: ${m.text()}`);
  if (m.type() === "warning") warnings.push(m.text());
});
// query-core's ESM build, file by file (its modules import each other relatively): offline, no bundler.
await page.route(`${base}/tanstack/**`, (r) =>
  r.fulfill({ path: join(QUERY_CORE, new URL(r.request().url()).pathname.slice("/tanstack/".length)) }),
);
const query = new URLSearchParams({ path: "/lists", token: "ann:red", transport: "websocket" });
await page.goto(`${base}/browser/module?${query}`);
await page.waitForFunction(() => document.documentElement.dataset.syncState === "open", null, WAIT);

const SEED = {
  '["todos","open"]': [{ id: 1, t: "a" }, { id: 2, t: "b" }],
  '["todos","all"]': [{ id: 1, t: "a" }],
  '["other"]': [{ id: 1, t: "a" }],
  '["page"]': { items: [{ id: 1 }], total: 1 },
  '["feed"]': { pages: [[{ id: 1 }, { id: 2 }], [{ id: 3 }]], pageParams: [0, 1] },
  '["threads"]': { pages: [{ items: [{ id: 1 }], next: 1 }, { items: [{ id: 2 }], next: null }], pageParams: [0, 1] },
  '["bad"]': { notAList: true },
};
await page.evaluate(async (seed) => {
  // What a bundler would replace in query-core's build.
  globalThis.process = { env: { NODE_ENV: "development" } };
  const { QueryClient } = await import("/tanstack/index.js");
  window.qc = new QueryClient();
  m.sync().setQueryAdapter(m.tanstackAdapter(qc));
  window.changes = 0;
  m.on("listChanged", () => changes++);
  for (const [key, data] of Object.entries(seed)) qc.setQueryData(JSON.parse(key), data);
}, SEED);

let sent = 0;
/** Request `listChange` with `data`; resolves once its reaction was applied in full. */
async function change(data) {
  await page.evaluate((data) => m.syncRequest({ name: "listChange", data }), data);
  await page.waitForFunction((n) => changes >= n, ++sent, WAIT);
}

/** The cache: every seeded entry, and whether an entry exists under `["absent"]`. */
const cache = () =>
  page.evaluate((keys) => {
    const out = Object.fromEntries(keys.map((k) => [k, qc.getQueryData(JSON.parse(k))]));
    out.absent = qc.getQueryCache().find({ queryKey: ["absent"] }) !== undefined;
    return out;
  }, Object.keys(SEED));

/** `data` with only the ids of its elements (in order), to compare lists briefly. */
const ids = (list) => list.map((el) => el.id + (el.t ? el.t : ""));

const steps = [
  [
    "prepend goes first in every entry under the key",
    { op: "prepend", key: ["todos"], item: { id: 0, t: "z" } },
    (c) => [ids(c['["todos","open"]']), ids(c['["todos","all"]']), ids(c['["other"]'])],
    [["0z", "1a", "2b"], ["0z", "1a"], ["1a"]],
  ],
  [
    "append goes last, in the entries under the key only",
    { op: "append", key: ["todos", "open"], item: { id: 3, t: "c" } },
    (c) => [ids(c['["todos","open"]']), ids(c['["todos","all"]'])],
    [["0z", "1a", "2b", "3c"], ["0z", "1a"]],
  ],
  [
    "replace puts the item in place of the one with its id",
    { op: "replace", key: ["todos"], item: { id: 2, t: "B" } },
    (c) => [ids(c['["todos","open"]']), ids(c['["todos","all"]'])],
    [["0z", "1a", "2B", "3c"], ["0z", "1a"]],
  ],
  [
    "remove drops the elements with the id",
    { op: "remove", key: ["todos"], id: 1 },
    (c) => [ids(c['["todos","open"]']), ids(c['["todos","all"]'])],
    [["0z", "2B", "3c"], ["0z"]],
  ],
  [
    "at: the list is a field of the entry, the rest of it kept",
    { op: "append", key: ["page"], at: "items", item: { id: 2 } },
    (c) => c['["page"]'],
    { items: [{ id: 1 }, { id: 2 }], total: 1 },
  ],
  [
    "infinite prepend goes to the first page",
    { op: "prepend", key: ["feed"], infinite: true, item: { id: 0 } },
    (c) => c['["feed"]'].pages.map(ids),
    [["0", "1", "2"], ["3"]],
  ],
  [
    "infinite append goes to the last page",
    { op: "append", key: ["feed"], infinite: true, item: { id: 4 } },
    (c) => c['["feed"]'].pages.map(ids),
    [["0", "1", "2"], ["3", "4"]],
  ],
  [
    "infinite replace finds the element in any page",
    { op: "replace", key: ["feed"], infinite: true, item: { id: 3, t: "x" } },
    (c) => c['["feed"]'].pages.map(ids),
    [["0", "1", "2"], ["3x", "4"]],
  ],
  [
    "infinite remove goes through every page, pageParams kept",
    { op: "remove", key: ["feed"], infinite: true, id: 1 },
    (c) => [c['["feed"]'].pages.map(ids), c['["feed"]'].pageParams],
    [[["0", "2"], ["3x", "4"]], [0, 1]],
  ],
  [
    "infinite with at: each page's field, the rest of each page kept",
    { op: "remove", key: ["threads"], infinite: true, at: "items", id: 2 },
    (c) => c['["threads"]'].pages,
    [{ items: [{ id: 1 }], next: 1 }, { items: [], next: null }],
  ],
  [
    "an entry of the wrong shape is left alone (and the event after it in the batch still came)",
    { op: "append", key: ["bad"], item: { id: 1 } },
    (c) => [c['["bad"]'], warnings.some((w) => w.includes('update_list (append) on ["bad"] left the entry alone'))],
    [{ notAList: true }, true],
  ],
  [
    "an entry not in the cache is not created",
    { op: "append", key: ["absent"], item: { id: 1 } },
    (c) => c.absent,
    false,
  ],
];
for (const [what, data, view, expected] of steps) {
  await change(data);
  const got = view(await cache());
  check(JSON.stringify(got) === JSON.stringify(expected), `${what} (${JSON.stringify(got)})`);
}

// Without an adapter: the reaction goes to `sync:query`, and `updateList` applies it.
const fallback = await page.evaluate(async () => {
  m.sync().setQueryAdapter(null);
  const event = new Promise((resolve) => addEventListener("sync:query", (e) => resolve(e.detail), { once: true }));
  await m.syncRequest({ name: "listChange", data: { op: "prepend", key: ["todos"], item: { id: 9 } } });
  const detail = await event;
  return { detail, applied: m.updateList([{ id: 1 }], detail), cached: qc.getQueryData(["todos", "all"]) };
});
check(
  fallback.detail.kind === "update_list" && fallback.detail.op === "prepend" &&
    JSON.stringify(fallback.applied) === '[{"id":9},{"id":1}]' && JSON.stringify(ids(fallback.cached)) === '["0z"]',
  `without an adapter update_list is a sync:query event that updateList applies (${JSON.stringify(fallback)})`,
);

// updateList itself: never changes its input; what it cannot apply returns the input as it is.
const direct = await page.evaluate(() => {
  const list = Object.freeze([Object.freeze({ id: 1 })]);
  const infinite = Object.freeze({ pages: Object.freeze([list]), pageParams: Object.freeze([0]) });
  const key = ["k"];
  return {
    appended: m.updateList(list, { key, op: "append", item: { id: 2 } }),
    infinite: m.updateList(infinite, { key, op: "remove", id_field: "id", id: 1, infinite: true }),
    noId: m.updateList(list, { key, op: "replace", id_field: "id", item: { title: "x" } }) === list,
    unknownOp: m.updateList(list, { key, op: "shuffle" }) === list,
    noPages: m.updateList(list, { key, op: "append", item: 1, infinite: true }) === list,
    notLoaded: m.updateList(undefined, { key, op: "append", item: 1 }) === undefined,
  };
});
check(
  JSON.stringify(direct) ===
    '{"appended":[{"id":1},{"id":2}],"infinite":{"pages":[[]],"pageParams":[0]},"noId":true,"unknownOp":true,"noPages":true,"notLoaded":true}' &&
    ["has no \"id\"", "unknown operation \"shuffle\"", "not an infinite query"].every((w) => warnings.some((x) => x.includes(w))),
  `updateList works on frozen data, and returns what it cannot change as it is, with a warning (${JSON.stringify(direct)})`,
);

await browser.close();
process.exit(failed ? 1 : 0);
