// The browser client's cursor and request bookkeeping, without a browser or a server: the module runs in
// Node against a fake WebSocket, `location`, `history` and `document`, and each check drives frames into it
// and reads what it sent.
//
//   node cursor-unit.mjs
//
// Prints `ok: …` per check; exits 1 if one failed. tests/browser/cursor.mjs checks the same in Chromium
// against the fixture server.

const sockets = [];
class FakeWebSocket {
  static OPEN = 1;
  constructor(url) {
    this.url = new URL(url);
    this.sent = [];
    this.readyState = 0;
    sockets.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close() {
    this.readyState = 3;
  }
  // Test side: the server accepts, speaks, or the network cuts.
  accept() {
    this.readyState = 1;
    this.onopen();
  }
  frame(m) {
    this.onmessage({ data: JSON.stringify(m) });
  }
  cut() {
    this.readyState = 3;
    this.onclose({ code: 1006 });
  }
}

let meta = null;
let reloads = 0;
globalThis.location = {
  protocol: "http:",
  host: "test",
  pathname: "/",
  reload: () => reloads++,
  assign: () => {},
};
const move = (_state, _title, url) => (location.pathname = new URL(url, `http://test${location.pathname}`).pathname);
globalThis.history = { pushState: move, replaceState: move };
globalThis.window = new EventTarget();
globalThis.document = {
  readyState: "complete",
  documentElement: { dataset: {} },
  addEventListener() {},
  querySelector: (selector) => (selector === 'meta[name="sync-cursor"]' && meta !== null ? { content: meta } : null),
  querySelectorAll: () => [],
};
globalThis.WebSocket = FakeWebSocket;
globalThis.PopStateEvent = class extends Event {};
// No backoff: a reconnect happens on the next turn.
Math.random = () => 0;
const warnings = [];
console.warn = (...args) => warnings.push(args.join(" "));

const { SyncClient } = await import("../../sync-runtime/client/sync-client.js");
const turn = () => new Promise((resolve) => setTimeout(resolve, 0));

let failed = false;
function check(ok, what, got) {
  console.log(`${ok ? "ok" : "FAILED"}: ${what}${ok ? "" : ` (got ${JSON.stringify(got)})`}`);
  if (!ok) failed = true;
}
const clients = [];
/** A client at `path`, built with `options`, on a fresh socket. */
function client(path, options = {}) {
  location.pathname = path;
  const c = new SyncClient({ url: "ws://test/_sync/ws", token: "t", ...options });
  clients.push(c);
  return [c, sockets.at(-1)];
}
const reaction = (seq, path, cursor, n = seq) => ({
  t: "reaction", seq, path, route: path, name: "e", cursor,
  reaction: { kind: "event", name: "e", payload: n },
});
const hello = (resumed, key = "k1") => ({ t: "hello", v: 1, conn: "c", resume: key, resumed, window: 64 });

// The render cursor: the page's meta tag, unless the options say otherwise.
{
  meta = "0123456789abcdef:41";
  const [c, ws] = client("/dashboard/");
  check(ws.url.searchParams.get("cursor") === "0123456789abcdef:41", "the meta cursor goes with the first connect", ws.url.search);
  check(ws.url.searchParams.get("path") === "/dashboard/", "the path is sent as the page has it", ws.url.search);
  check(c.cursor()?.path === "/dashboard" && c.cursor()?.cursor === "0123456789abcdef:41", "cursor() is the meta cursor, for the normalized path", c.cursor());
  const [d, ws2] = client("/dashboard", { cursor: "e_-Z:7" });
  check(ws2.url.searchParams.get("cursor") === "e_-Z:7", "options.cursor wins over the meta tag", ws2.url.search);
  const [e, ws3] = client("/dashboard", { cursor: null });
  check(!ws3.url.searchParams.has("cursor") && e.cursor() === null, "options.cursor: null sends none", ws3.url.search);
  meta = "not a cursor";
  const [f, ws4] = client("/dashboard");
  check(!ws4.url.searchParams.has("cursor") && f.cursor() === null && warnings.some((w) => w.includes("malformed")), "a malformed meta cursor is ignored, with a warning", ws4.url.search);
  meta = null;
  const [g, ws5] = client("/dashboard");
  check(!ws5.url.searchParams.has("cursor") && g.cursor() === null, "no meta tag, no cursor", ws5.url.search);
  for (const x of [c, d, e, f, g]) x.close();
}

// Reactions move the cursor; a reconnect sends the latest, alongside resume/last_seq.
{
  const [c, ws] = client("/dashboard", { cursor: "ep:1" });
  ws.accept();
  ws.frame(hello(false));
  ws.frame({ t: "located", path: "/dashboard", route: "/dashboard" });
  ws.frame(reaction(1, "/dashboard", "ep:2"));
  ws.frame(reaction(2, "/dashboard", "ep:3"));
  ws.frame(reaction(2, "/dashboard", "ep:2")); // a duplicate: ignored
  ws.frame(reaction(3, "/elsewhere", "ep:99")); // another path's history: not this cursor
  check(c.cursor()?.cursor === "ep:3", "the last reaction on the path sets the cursor; duplicates and other paths do not", c.cursor());
  ws.frame({ t: "cursor", path: "/elsewhere", cursor: "ep:98" });
  check(c.cursor()?.cursor === "ep:3", "a cursor frame for another path does not move it", c.cursor());
  ws.frame({ t: "cursor", path: "/dashboard", cursor: "ep:5" });
  check(c.cursor()?.cursor === "ep:5", "a cursor frame (triggers its filter skipped) moves it", c.cursor());
  ws.cut();
  await turn();
  const again = sockets.at(-1);
  const q = again.url.searchParams;
  check(again !== ws && q.get("resume") === "k1" && q.get("last_seq") === "3" && q.get("cursor") === "ep:5", "a reconnect sends resume, last_seq and the cursor", again.url.search);

  // Resuming failed (another node): a new connection, numbering from 1, caught up from the cursor.
  const got = [];
  c.on("e", (n) => got.push(n));
  again.accept();
  again.frame(hello(false, "k2"));
  again.frame({ t: "located", path: "/dashboard", route: "/dashboard" });
  again.frame(reaction(1, "/dashboard", "ep:4", 4));
  again.frame(reaction(2, "/dashboard", "ep:5", 5));
  check(reloads === 0 && got.join() === "4,5" && c.cursor()?.cursor === "ep:5", "resumed:false is no reload; the catch-up numbered from 1 is applied", { reloads, got, cursor: c.cursor() });
  again.frame({ t: "resync" });
  check(reloads === 1, "resync reloads", reloads);
  c.close();
}

// SPA navigation: a cursor goes with navigate(), leaving the path forgets it.
{
  const [c, ws] = client("/dashboard", { cursor: "ep:1" });
  ws.accept();
  ws.frame(hello(false));
  c.navigate("/boards/%31", { cursor: "ep:9" });
  check(JSON.stringify(ws.sent.at(-1)) === '{"t":"nav","path":"/boards/%31","cursor":"ep:9"}', "navigate(url, { cursor }) sends the cursor in nav", ws.sent.at(-1));
  check(c.cursor()?.path === "/boards/1" && c.cursor()?.cursor === "ep:9", "the cursor is now the new path's", c.cursor());
  ws.frame(reaction(1, "/dashboard", "ep:2")); // late, for the page left behind
  ws.frame({ t: "located", path: "/boards/1", route: "/boards/[id]" });
  ws.frame(reaction(2, "/boards/1", "ep:10"));
  check(c.cursor()?.cursor === "ep:10", "a late reaction for the old path does not move it; the new path's do", c.cursor());
  history.pushState(null, "", "/boards/1?tab=2");
  check(JSON.stringify(ws.sent.at(-1)) === '{"t":"nav","path":"/boards/1"}' && c.cursor()?.cursor === "ep:10", "a move within the path keeps the cursor and does not resend it", ws.sent.at(-1));
  history.pushState(null, "", "/home");
  check(JSON.stringify(ws.sent.at(-1)) === '{"t":"nav","path":"/home"}' && c.cursor() === null, "pushState to another path sends no cursor and drops it", { sent: ws.sent.at(-1), cursor: c.cursor() });
  ws.frame({ t: "located", path: "/home", route: "/home" });
  ws.frame(reaction(3, "/boards/1", "ep:11")); // late again
  check(c.cursor() === null, "a late reaction for a path left does not bring a cursor back", c.cursor());
  ws.cut();
  await turn();
  check(!sockets.at(-1).url.searchParams.has("cursor"), "no cursor on a reconnect when none belongs to the path", sockets.at(-1).url.search);
  c.close();
}

// Navigating while disconnected or connecting: the cursor follows the page to the next connection.
{
  const [c, ws] = client("/dashboard", { cursor: "ep:1" });
  ws.accept();
  ws.frame(hello(false));
  ws.cut();
  c.navigate("/boards/2", { cursor: "ep:20" });
  await turn();
  const next = sockets.at(-1);
  check(next.url.searchParams.get("path") === "/boards/2" && next.url.searchParams.get("cursor") === "ep:20", "navigated while down: the reconnect carries the new path's cursor", next.url.search);
  next.accept();
  next.frame(hello(false, "k2"));
  check(!next.sent.some((m) => m.t === "nav"), "and sends no nav", next.sent);
  // Moves on while the next connection is still opening.
  next.cut();
  await turn();
  const opening = sockets.at(-1);
  c.navigate("/boards/3", { cursor: "ep:30" });
  opening.accept();
  opening.frame(hello(false, "k3"));
  const nav = opening.sent.find((m) => m.t === "nav");
  check(opening.url.searchParams.get("cursor") === "ep:20" && nav?.path === "/boards/3" && nav?.cursor === "ep:30", "navigated while connecting: the catch-up nav carries the cursor", { url: opening.url.search, nav });
  c.close();
}

// Requests across connections: one sent on a connection that is cut rejects with `closed`; one made while
// down waits and goes out on the next connection; past the queue's bound the oldest is dropped
// (`queue_full`); closing for good rejects the rest. None stays pending.
{
  const settled = (p) => p.then((outcome) => ({ outcome }), (e) => ({ code: e.code, name: e.name }));
  const [c, ws] = client("/dashboard");
  ws.accept();
  ws.frame(hello(false));
  const lost = settled(c.request({ name: "a" }));
  const sentId = ws.sent.find((m) => m.t === "req")?.id;
  ws.cut();
  const waiting = settled(c.request({ name: "b", data: 2 }));
  check(JSON.stringify(await lost) === '{"code":"closed","name":"SyncRequestError"}', "a request sent on a cut connection rejects with closed", await lost);
  await turn();
  const next = sockets.at(-1);
  next.accept();
  next.frame(hello(false, "k2"));
  const req = next.sent.find((m) => m.t === "req");
  check(req?.name === "b" && req.id !== sentId && !next.sent.some((m) => m.name === "a"), "one made while down goes out on the next connection, the lost one does not", next.sent);
  next.frame({ t: "result", id: req.id, matched: 2, passed: 1, delivered: 1, failed: 0 });
  check(JSON.stringify(await waiting) === '{"outcome":{"matched":2,"passed":1,"delivered":1,"failed":0}}', "and resolves with its outcome", await waiting);

  next.cut();
  const queued = [];
  for (let i = 0; i <= 256; i++) queued.push(settled(c.request({ name: `q${i}` })));
  check(JSON.stringify(await queued[0]) === '{"code":"queue_full","name":"SyncRequestError"}', "past 256 waiting requests the oldest rejects with queue_full", await queued[0]);
  c.close();
  const codes = new Set((await Promise.all(queued.slice(1))).map((r) => r.code));
  check(codes.size === 1 && codes.has("closed") && c.queue.length === 0, "closing for good rejects every waiting request with closed", [...codes]);
  check(JSON.stringify(await settled(c.request({ name: "late" }))) === '{"code":"closed","name":"SyncRequestError"}', "and any request after", null);
}

// normalizePath against the server's own test vectors (sync-runtime/src/routes.rs).
{
  const cases = [
    ["/dashboard/", "/dashboard"], ["/", "/"], ["//a//b/", "/a/b"], ["/boards/%31", "/boards/1"],
    ["/caf%C3%A9/%7Eme", "/café/~me"], ["/a%2Fb/c", "/a%2Fb/c"], ["/a%2fb", "/a%2Fb"], ["/room/a%2531", "/room/a%31"],
  ];
  const wrong = [];
  for (const [raw, want] of cases) {
    const [c] = client(raw, { cursor: "ep:1" });
    if (c.cursor()?.path !== want) wrong.push([raw, c.cursor()?.path, want]);
    c.close();
  }
  check(!wrong.length, "paths are normalized as the server does", wrong);
}

process.exit(failed ? 1 : 0);
