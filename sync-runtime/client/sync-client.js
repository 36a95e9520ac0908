// sync-client.js: the browser client of the sync framework (protocol v1, see docs/PROTOCOL.md).
// A plain ES module with no dependencies, served by the runtime at `/_sync/client.js`.
//
//   import { syncRequest, on } from "/_sync/client.js";
//   on("refreshData", (payload) => render(payload));
//   syncRequest({ name: "refreshData", data: { team: 1 } }); // a promise of the outcome, to await or ignore
//   onPresence(({ count, users }) => showWhoIsHere(count, users)); // or presence() for the list now
//
// Tokens that expire: `sync({ token: () => auth.token, refreshToken: () => auth.fetchFreshToken() })`.
//
// Nothing lost between the server's render and the live connection: a page rendered with
// `<meta name="sync-cursor" content="…">` (the server's `Cursor::meta()`) connects from that cursor, and the
// server sends every reaction its path had since. An SPA that loads a page's data itself passes the cursor
// that came with it: `sync().navigate("/boards/7", { cursor })`.
//
// Presence needs no code at all: `<ul data-sync-presence></ul>` lists the users on the current page and
// `<span data-sync-presence-count></span>` counts them (see `renderPresence` below for templates).

import { updateList } from "./query-cache.js";

export { tanstackAdapter, updateList } from "./query-cache.js";

const MAX_QUEUE = 256;

/**
 * @typedef {object} SyncOutcome What became of a request: the server's `result` frame.
 * @property {number} matched Connections on the route's path when it ran, the sender included unless
 *   `echo: false`. `0`: nobody was there (not an error).
 * @property {number} passed Recipients whose server filter let it through (all matched ones without one).
 * @property {number} delivered Reactions handed to a connection's queue.
 * @property {number} failed Recipients whose filter panicked, errored or overran its deadline.
 */

/**
 * @typedef {object} SyncRequestOptions
 * @property {string} name The sync's name, as its `_sync/<name>_client.rs` file spells it.
 * @property {any} [data] Its data, checked by the server against the sync's `Data` type. Default `null`.
 * @property {boolean} [echo] `false` leaves the sender out of the fan-out. Default `true`.
 * @property {(result: SyncResult) => void} [onResult] Gets the result; when given, an error counts as
 *   handled (no unhandled rejection).
 */

/**
 * @typedef {({ ok: true } & SyncOutcome) | { ok: false, code: string, message: string }} SyncResult
 */

/**
 * Why a request failed: the rejection of `syncRequest` / `SyncClient#request`. `code` is stable, to match on:
 *
 * - a server error code (docs/PROTOCOL.md, "Error codes"): `unknown_name`, `not_on_route`, `no_location`,
 *   `bad_data`, `gate_refused`, `too_large`, `rate_limited`, `overloaded`, `unavailable`, `malformed`;
 * - or the client's own: `closed` (sent, but the connection was lost or closed before the answer: the sync
 *   may or may not have run; or never sent because the client closed for good), `queue_full` (more than 256
 *   requests waited for a connection: the oldest was dropped unsent).
 *
 * ```js
 * try {
 *   await syncRequest({ name: "moveCard", data });
 * } catch (e) {
 *   if (e instanceof SyncRequestError && e.code === "gate_refused") showNotAllowed();
 *   else throw e;
 * }
 * ```
 */
export class SyncRequestError extends Error {
  /**
   * @param {string} syncName
   * @param {string} code
   * @param {string} [detail] the server's message
   */
  constructor(syncName, code, detail) {
    super(`sync "${syncName}" failed: ${code}${detail ? ` (${detail})` : ""}`);
    this.name = "SyncRequestError";
    /** The stable error code. */
    this.code = code;
    /** The name of the sync that was requested. */
    this.syncName = syncName;
  }
}

// The most recently created client: the one declarative presence elements show.
let current = null;

/**
 * One live connection to the sync hub. It reports `location.pathname` on connect and on every SPA
 * navigation, reconnects with backoff and resumes (the server replays what was missed), and applies the
 * reactions it receives. It also keeps a cursor, its position in the current path's history (see
 * `cursor()`): sent with every connect, it lets any server node catch the page up when resuming cannot
 * (another node, a resume window past) and sends `resync` (the page reloads) only when history no longer
 * covers the gap. It uses a WebSocket, or SSE (an `EventSource` plus a `POST` per message) when told
 * to or when a WebSocket cannot be opened at all.
 */
export class SyncClient extends EventTarget {
  /**
   * @param {object} [options]
   * @param {string} [options.url] WebSocket URL; default `ws(s)://<host>/_sync/ws`.
   * @param {string} [options.sseUrl] SSE URL; default the WebSocket URL with `http(s)` and `/sse`.
   * @param {"auto"|"websocket"|"sse"} [options.transport] `auto` (default): WebSocket, and SSE from then
   *   on if a WebSocket fails before it ever opened on this page.
   * @param {string|(() => string)} [options.token] Sent as `?token=`; cookie sessions need nothing. A function
   *   is called on each (re)connect, until `refreshToken` has supplied a token.
   * @param {() => Promise<string>} [options.refreshToken] Fetches a fresh token. When the server announces
   *   when the connection's credential expires, it is called shortly before (a fifth of the lifetime, at most
   *   30 s) and the token is handed to the server, and on close 4001 (expired) to come back with it. The
   *   latest token is used for every later reconnect. Without it an expired connection closes for good and
   *   `sync:expired` is dispatched on `window`.
   * @param {boolean} [options.spa] Apply `navigate` reactions with `history.pushState` instead of a page load.
   * @param {string|null} [options.cursor] Where the page's data stands in its path's history
   *   (`<epoch>:<offset>`, from the server's `hub.cursor(path)`): the first connect asks for every reaction
   *   since. Default: the `<meta name="sync-cursor" content="…">` of a server-rendered page, if it has one;
   *   `null`: none.
   */
  constructor(options = {}) {
    super();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.url = options.url || `${scheme}//${location.host}/_sync/ws`;
    this.sseUrl = options.sseUrl || this.url.replace(/^ws/, "http").replace(/\/ws$/, "/sse");
    this.fallback = (options.transport || "auto") === "auto";
    /** The transport in use: `websocket` or `sse`. */
    this.transport = options.transport === "sse" ? "sse" : "websocket";
    this.wsOpened = false;
    this.posting = Promise.resolve();
    this.getToken = typeof options.token === "function" ? options.token : null;
    this.token = this.getToken ? undefined : options.token;
    this.refreshToken = options.refreshToken || null;
    this.refreshTimer = null;
    this.renewing = null;
    this.spa = !!options.spa;
    /** `connecting` | `open` | `reconnecting` | `closed` */
    this.state = "connecting";
    /** Sequence number of the last reaction applied. */
    this.lastSeq = 0;
    this.acked = 0;
    this.window = 0;
    this.ackTimer = null;
    this.resumeKey = null;
    this.listeners = new Map();
    this.pending = new Map();
    this.queue = [];
    this.nextId = 1;
    this.attempt = 0;
    this.queryAdapter = null;
    this.path = location.pathname;
    /** The current path, normalized as the server does (reaction and `located` paths are). */
    this.here = normalizePath(this.path);
    /** The normalized path the server was last told on this connection (connect or `nav`). */
    this.reported = null;
    /** `{ path, cursor }`: the last position seen in the current path's history, or `null`. */
    this.position = null;
    this.navCursor = null;
    const cursor = "cursor" in options ? options.cursor : renderCursor();
    if (cursor != null) this.setCursor(this.here, cursor);
    this.presenceUsers = new Map();
    this.presenceState = Object.freeze({ path: null, count: 0, users: Object.freeze([]) });
    current = this;
    this.watchNavigation();
    // Leaving the page: a WebSocket sends its close frame by itself; an SSE stream says goodbye.
    window.addEventListener("pagehide", () => this.conn && this.conn.bye && this.conn.bye());
    // Back from the back-forward cache after that goodbye: connect again (a new connection, caught up from
    // the cursor).
    window.addEventListener("pageshow", (e) => {
      if (e.persisted && this.conn && this.conn.bye && this.state !== "closed") this.closed(this.conn, 1006);
    });
    this.open();
  }

  open() {
    // ack=1: the server keeps reactions until acknowledged, so a resume never misses one.
    this.openedAt = location.pathname;
    if (this.getToken) this.token = this.getToken();
    const params = new URLSearchParams({ path: this.openedAt, ack: "1" });
    if (this.token) params.set("token", this.token);
    if (this.resumeKey) {
      params.set("resume", this.resumeKey);
      params.set("last_seq", String(this.lastSeq));
    }
    // Every time, not only when resuming fails: a resume works only on the node that held the connection,
    // and the client cannot know which node it reaches. A cursor is for one path: the one it was seen on.
    this.reported = normalizePath(this.openedAt);
    if (this.position && this.position.path === this.reported) params.set("cursor", this.position.cursor);
    if (this.transport === "sse") return this.openSse(params);
    const ws = new WebSocket(`${this.url}?${params}`);
    let opened = false;
    const conn = {
      send: (text) => ws.send(text),
      ready: () => ws.readyState === WebSocket.OPEN,
      close: () => ws.close(1000),
    };
    this.conn = conn;
    ws.onmessage = (e) => this.receive(e.data);
    ws.onopen = () => {
      opened = this.wsOpened = true;
      this.attempt = 0;
    };
    ws.onclose = (e) => {
      // A WebSocket that never opened on this page (a proxy or network that blocks it): use SSE instead.
      if (!opened && !this.wsOpened && this.fallback) this.transport = "sse";
      this.closed(conn, e.code);
    };
  }

  // SSE: the stream is an EventSource (reconnected by this client, not the browser, so that resuming works
  // the same as over a WebSocket); messages are POSTs, one at a time and in order.
  openSse(params) {
    const es = new EventSource(`${this.sseUrl}?${params}`);
    const conn = {
      send: (text) => this.post(conn, text),
      ready: () => es.readyState === EventSource.OPEN && !!this.resumeKey,
      close: () => es.close(),
    };
    this.conn = conn;
    conn.bye = () => {
      // The server cannot tell a closed stream from a cut one: say goodbye, so it forgets the connection now.
      const params = new URLSearchParams({ key: this.resumeKey });
      if (this.token) params.set("token", this.token);
      const body = new Blob(['{"t":"bye"}'], { type: "text/plain;charset=UTF-8" });
      if (this.resumeKey) navigator.sendBeacon(`${this.sseUrl}?${params}`, body);
      es.close();
    };
    es.onmessage = (e) => this.receive(e.data);
    es.onerror = () => {
      es.close();
      this.closed(conn, 1006);
    };
  }

  post(conn, text) {
    const params = new URLSearchParams({ key: this.resumeKey });
    if (this.token) params.set("token", this.token);
    const url = `${this.sseUrl}?${params}`;
    this.posting = this.posting
      .then(async () => {
        if (conn.dead) return;
        const headers = { "content-type": "text/plain;charset=UTF-8" };
        const r = await fetch(url, { method: "POST", body: text, headers, credentials: "same-origin" });
        if (r.status !== 202) throw new Error(`HTTP ${r.status}`);
      })
      .catch(() => {
        // The connection is gone (or refused us): reopen the stream, which resumes.
        conn.close();
        this.closed(conn, 1006);
      });
  }

  // The transport `conn` ended with `code`: come back (resuming), unless told not to.
  closed(conn, code) {
    if (conn.dead) return;
    conn.dead = true;
    clearInterval(this.pinger);
    if (this.conn !== conn) return;
    clearTimeout(this.refreshTimer);
    this.failPending("closed", "the connection closed before the answer; the sync may or may not have run");
    // 4003: the server disconnected this user on purpose; 4403: this page is not for this user (the
    // admin page). Do not come back.
    if (code === 4003 || code === 4403 || this.state === "closed") return this.setState("closed");
    // 4001: the credential expired. Come back (resuming) with a fresh token, or stop if none can be had.
    if (code === 4001 && !this.refreshToken) return this.expire();
    this.setState("reconnecting");
    if (code !== 4001) return this.reconnect();
    this.renew().then((token) => {
      if (this.state === "closed") return;
      if (token) this.reconnect();
      else this.expire();
    });
  }

  reconnect() {
    const delay = Math.random() * Math.min(10000, 250 * 2 ** this.attempt++);
    // close() during the wait means no new connection.
    setTimeout(() => this.state !== "closed" && this.open(), delay);
  }

  // The credential expired and no fresh one came: the page must sign in again.
  expire() {
    this.setState("closed");
    window.dispatchEvent(new CustomEvent("sync:expired"));
  }

  // `hello` and `refreshed` say when the credential expires: renew it a fifth of its lifetime (at most 30 s)
  // before, if the app can. Any earlier plan is void: the server just spoke about the current credential.
  scheduleRefresh(expiresIn) {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    if (!this.refreshToken || typeof expiresIn !== "number") return;
    const delay = expiresIn - Math.min(expiresIn / 5, 30000);
    // Past 2^31-1 ms setTimeout fires at once; refreshing after 24 days instead is harmless.
    this.refreshTimer = setTimeout(() => this.refresh(), Math.min(delay, 2 ** 31 - 1));
  }

  // One attempt per scheduled time: a failure or `refresh_refused` is reported (`sync:error`) and not
  // retried; the connection lasts until the old credential expires, and its 4001 close renews once more.
  async refresh() {
    const token = await this.renew();
    if (this.state === "closed") return;
    if (!token) {
      const detail = { ok: false, code: "refresh_failed", message: "refreshToken gave no token" };
      return window.dispatchEvent(new CustomEvent("sync:error", { detail }));
    }
    if (this.state === "open" && this.conn.ready()) this.conn.send(JSON.stringify({ t: "refresh", token }));
  }

  // Ask the app for a fresh token, one request at a time; it replaces `options.token` for every later
  // (re)connect and SSE post. Resolves to the token, or `null` when there is none.
  renew() {
    if (!this.refreshToken) return Promise.resolve(null);
    return (this.renewing ||= Promise.resolve()
      .then(() => this.refreshToken())
      .then(
        (token) => {
          if (typeof token !== "string" || !token) return null;
          this.getToken = null;
          this.token = token;
          return token;
        },
        (err) => {
          console.warn("sync: refreshToken failed", err);
          return null;
        },
      )
      .finally(() => (this.renewing = null)));
  }

  /** Close for good. */
  close() {
    this.setState("closed");
    clearTimeout(this.refreshTimer);
    if (this.conn) (this.conn.bye || this.conn.close)();
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    // Closed for good: nothing waiting will ever be sent, and no answer will come.
    if (state === "closed") this.failPending("closed", "the client is closed", true);
    document.documentElement.dataset.syncState = state;
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
    window.dispatchEvent(new CustomEvent("sync:state", { detail: state }));
  }

  /**
   * Call `fn(state)` on every connection state change; returns an unsubscribe function.
   * @param {(state: string) => void} fn
   */
  onState(fn) {
    const h = (e) => fn(e.detail);
    this.addEventListener("state", h);
    return () => this.removeEventListener("state", h);
  }

  /**
   * Who is on the current page: `{ path, count, users: [{ user, view }] }`, frozen. `path` is where the
   * server located this connection (`null` before it did); `users` is the server's bounded list in join
   * order and `count` the total, which may be larger in a crowded room. `view` is whatever the app chose to
   * show of each user (other users' data: render it as text).
   * @returns {{ path: string|null, count: number, users: ReadonlyArray<{ user: string, view: any }> }}
   */
  presence() {
    return this.presenceState;
  }

  /**
   * Call `fn(state, change)` after every presence change (see `presence()`), where `change` is
   * `{ join: [{ user, view }], leave: [user] }`; a user whose view changed is in `join`. The same state goes
   * to `sync:presence` events on `window`. Returns an unsubscribe function.
   * @param {(state: object, change: { join: object[], leave: string[] }) => void} fn
   */
  onPresence(fn) {
    const h = (e) => fn(e.detail.state, e.detail.change);
    this.addEventListener("presence", h);
    return () => this.removeEventListener("presence", h);
  }

  // A `presence` snapshot replaces the list; a `presence_diff` removes `leave`, then adds or updates `join`
  // (an updated user keeps its place, a new one goes last).
  presenceFrame(m) {
    const diff = m.t === "presence_diff";
    const before = this.presenceUsers;
    const users = diff ? new Map(before) : new Map();
    // Unknown keys are no-ops, and not reported as leaving.
    const leave = diff ? (m.leave || []).map(String).filter((user) => users.delete(user)) : [];
    const join = [];
    for (const j of (diff ? m.join : m.users) || []) {
      if (!j || j.user == null) continue;
      const entry = Object.freeze({ user: String(j.user), view: freeze(j.view ?? null) });
      users.set(entry.user, entry);
      join.push(entry);
    }
    if (!diff) for (const user of before.keys()) if (!users.has(user)) leave.push(user);
    const count = typeof m.count === "number" ? m.count : users.size;
    this.setPresence(this.presenceState.path, count, users, { join, leave });
  }

  // Nobody (yet) on `path`: a new page, or a new connection, never shows the previous one's users.
  clearPresence(path) {
    const leave = [...this.presenceUsers.keys()];
    if (path === this.presenceState.path && !leave.length && !this.presenceState.count) return;
    this.setPresence(path, 0, new Map(), { join: [], leave });
  }

  setPresence(path, count, users, change) {
    this.presenceUsers = users;
    const state = Object.freeze({ path, count, users: Object.freeze([...users.values()]) });
    this.presenceState = state;
    this.dispatchEvent(new CustomEvent("presence", { detail: { state, change } }));
    window.dispatchEvent(new CustomEvent("sync:presence", { detail: state }));
    if (current === this) renderPresence(state);
  }

  // A request goes out now, or waits (bounded) for the connection to open.
  send(frame) {
    if (this.state === "open" && this.conn.ready()) return this.transmit(frame);
    if (this.queue.length >= MAX_QUEUE) {
      const dropped = this.queue.shift();
      const p = this.pending.get(dropped.id);
      const message = `more than ${MAX_QUEUE} requests waited for the connection; this one was never sent`;
      if (p) this.settle(dropped.id, p, { ok: false, code: "queue_full", message });
    }
    this.queue.push(frame);
  }

  // Only a request that went out can be lost with its connection (see failPending).
  transmit(frame) {
    this.conn.send(JSON.stringify(frame));
    const p = this.pending.get(frame.id);
    if (p) p.sent = true;
  }

  /**
   * Request a sync on the current route (the page's location). Returns a promise of its outcome, which may
   * be ignored: a request that fails with nobody handling the error is reported on the console as an
   * unhandled rejection. `onResult` (optional) also gets every result, as `{ ok: true, ...outcome }` or
   * `{ ok: false, code, message }`, and counts as handling the error. The same goes to `sync:result` /
   * `sync:error` events on `window`.
   *
   * A request made while the connection is down waits for it (at most 256 requests wait; past that the
   * oldest is dropped with `queue_full`). One that was sent and whose connection is lost before the answer
   * rejects with `closed` (the server may or may not have run it); so does every request still waiting when
   * the client closes for good (`close()`, a 4003 close, an expired credential), and any request after.
   *
   * ```js
   * const { delivered } = await client.request({ name: "refreshData", data: { team: 1 } });
   * client.request({ name: "refreshData", data }).catch((e) => e.code === "bad_data" && showFormError(e));
   * ```
   * @param {SyncRequestOptions} request
   * @returns {Promise<SyncOutcome>} rejects with a {@link SyncRequestError}
   */
  request({ name, data = null, echo = true, onResult }) {
    let p;
    const outcome = new Promise((resolve, reject) => (p = { name, onResult, resolve, reject, sent: false }));
    // The error goes to onResult: nobody need handle the rejection as well.
    if (onResult) outcome.catch(() => {});
    const id = this.nextId++;
    if (this.state === "closed") {
      this.settle(id, p, { ok: false, code: "closed", message: "the client is closed" });
    } else {
      this.pending.set(id, p);
      this.send({ t: "req", id, name, data, echo });
    }
    return outcome;
  }

  /**
   * Listen to `event` reactions named `name`; returns an unsubscribe function.
   * @param {string} name
   * @param {(payload: any, meta: object) => void} fn
   */
  on(name, fn) {
    if (!this.listeners.has(name)) this.listeners.set(name, new Set());
    this.listeners.get(name).add(fn);
    return () => this.listeners.get(name).delete(fn);
  }

  /**
   * Where `invalidate` / `set_query` / `remove_query` / `update_list` reactions go, e.g.
   * `tanstackAdapter(queryClient)`. `update(key, updater)` calls `updater(data)` for every cached entry under
   * `key` and stores what it returns (an `undefined` return leaves the entry alone). Without an adapter (or
   * `update_list` without `update`) they are dispatched as `sync:query` events on `window`, the reaction as
   * `detail` (`updateList(data, detail)` applies an `update_list`).
   * @param {{ invalidate(key: any): void, set(key: any, data: any): void, remove(key: any): void, update?(key: any, updater: (data: any) => any): void }} adapter
   */
  setQueryAdapter(adapter) {
    this.queryAdapter = adapter;
  }

  /**
   * Go to `url` in an SPA (`history.pushState`, or `replaceState` with `replace`) and report it, with the
   * cursor of the data the page shows for it, if it has one: the server then sends every reaction the new
   * path had after that cursor. A plain `history.pushState` reports the move too, without a cursor.
   * @param {string} url
   * @param {{ cursor?: string, replace?: boolean, state?: any }} [options] `cursor`: `<epoch>:<offset>`, as
   *   the server's `hub.cursor(path)` gave it when the data was read.
   */
  navigate(url, { cursor = null, replace = false, state = null } = {}) {
    // The hooked history methods call nav(), which takes this cursor for the path they moved to.
    this.navCursor = cursor;
    try {
      history[replace ? "replaceState" : "pushState"](state, "", url);
    } finally {
      this.navCursor = null;
    }
  }

  /**
   * Where the page stands in its path's history: `{ path, cursor }` (frozen; `path` normalized as the
   * server does), or `null` before the first reaction on a page rendered without a cursor. It moves with
   * every reaction on the current path and is dropped when the page moves to another path.
   * @returns {{ path: string, cursor: string }|null}
   */
  cursor() {
    return this.position;
  }

  setCursor(path, cursor) {
    if (typeof cursor === "string" && CURSOR.test(cursor)) this.position = Object.freeze({ path, cursor });
    else console.warn("sync: ignoring a malformed cursor", cursor);
  }

  nav() {
    const cursor = this.navCursor;
    this.navCursor = null;
    this.path = location.pathname;
    this.here = normalizePath(this.path);
    // A cursor belongs to one path: leaving it (a query or hash change is no move) forgets it.
    if (cursor != null) this.setCursor(this.here, cursor);
    else if (this.position && this.position.path !== this.here) this.position = null;
    if (this.state !== "open") return;
    const frame = { t: "nav", path: this.path };
    // The cursor goes with the nav that brings it, and with the first report of a path the connection is
    // not at (one navigated to while connecting). Never again for a path the connection is on: whatever
    // was already on its way would come twice.
    if (this.position && (cursor != null || this.reported !== this.here)) frame.cursor = this.position.cursor;
    this.reported = this.here;
    this.conn.send(JSON.stringify(frame));
  }

  watchNavigation() {
    for (const method of ["pushState", "replaceState"]) {
      const original = history[method];
      history[method] = (...args) => {
        const result = original.apply(history, args);
        this.nav();
        return result;
      };
    }
    window.addEventListener("popstate", () => this.nav());
  }

  // Requests sent on a connection that ended will get no answer. Those still queued are sent on the next
  // connection, unless the client closed for good (`everything`): none waits forever.
  failPending(code, message, everything = false) {
    for (const [id, p] of this.pending) if (everything || p.sent) this.settle(id, p, { ok: false, code, message });
    if (everything) this.queue.length = 0;
  }

  settle(id, p, result) {
    this.pending.delete(id);
    // The promise first: an `onResult` or event listener that throws must not leave it pending.
    if (!result.ok) p.reject(new SyncRequestError(p.name, result.code, result.message));
    else p.resolve({ matched: result.matched, passed: result.passed, delivered: result.delivered, failed: result.failed });
    if (p.onResult) p.onResult(result);
    const type = result.ok ? "sync:result" : "sync:error";
    window.dispatchEvent(new CustomEvent(type, { detail: { name: p.name, ...result } }));
  }

  // Acknowledge every half window at once, and the rest shortly after the reactions pause.
  ack() {
    if (!this.window) return;
    if (this.lastSeq - this.acked >= Math.max(1, this.window >> 1)) return this.sendAck();
    if (!this.ackTimer) this.ackTimer = setTimeout(() => this.sendAck(), 20);
  }

  sendAck() {
    clearTimeout(this.ackTimer);
    this.ackTimer = null;
    if (this.lastSeq <= this.acked || !this.conn?.ready()) return;
    this.acked = this.lastSeq;
    this.conn.send(`{"t":"ack","seq":${this.acked}}`);
  }

  receive(text) {
    let m;
    try {
      m = JSON.parse(text);
    } catch {
      return console.warn("sync: unreadable frame", text);
    }
    switch (m.t) {
      case "hello":
        // A resumed connection keeps its list (a fresh snapshot follows); a new one starts from nobody, and
        // numbers from 1. A new one is no resync by itself: the server catches the page up from the cursor,
        // and says `resync` only when it cannot.
        if (!m.resumed) {
          this.lastSeq = 0;
          this.clearPresence(null);
        }
        this.acked = this.lastSeq;
        this.window = m.window || 0;
        this.resumeKey = m.resume;
        this.attempt = 0;
        this.scheduleRefresh(m.expires_in);
        this.setState("open");
        // Navigated while connecting: report where the page is now.
        if (this.openedAt !== location.pathname) this.nav();
        for (const frame of this.queue.splice(0)) this.transmit(frame);
        clearInterval(this.pinger);
        // Over SSE the server's keepalive comments do this job.
        if (this.transport === "websocket") {
          this.pinger = setInterval(() => this.conn.send('{"t":"ping"}'), 25000);
        }
        break;
      case "close": {
        // SSE's last event: what a WebSocket close frame says.
        const conn = this.conn;
        conn.close();
        this.closed(conn, m.code);
        break;
      }
      case "located":
        // Presence is per page: a new path starts empty. The same path again (say after a resume) keeps the
        // list, which the server's next snapshot replaces anyway.
        if (m.path !== this.presenceState.path) this.clearPresence(m.path);
        // The cursor needs nothing here: nav() dropped it when the page left its path, before this answer.
        // (Dropping it here instead would be wrong for a late answer to an earlier nav, after which the
        // page moved on with a new cursor.)
        break;
      case "presence":
      case "presence_diff":
        // Late news about a page this connection has left: not this page's users.
        if (m.path === this.presenceState.path) this.presenceFrame(m);
        break;
      case "refreshed":
        this.scheduleRefresh(m.expires_in);
        break;
      case "resync": {
        // What was missed can be neither replayed nor caught up from the cursor: the page must reload.
        const e = new CustomEvent("sync:resync", { cancelable: true });
        if (window.dispatchEvent(e)) location.reload();
        break;
      }
      case "cursor":
        // Its filter skipped the triggers since: the page had them all the same, as far as it cares.
        if (m.path === this.here && typeof m.cursor === "string") this.setCursor(m.path, m.cursor);
        break;
      case "reaction":
        if (m.seq <= this.lastSeq) return;
        this.lastSeq = m.seq;
        // Before applying it: a `navigate` reaction moves the page, and the cursor with it.
        if (m.path === this.here && typeof m.cursor === "string") this.setCursor(m.path, m.cursor);
        this.apply(m.reaction, m);
        this.ack();
        break;
      case "result":
      case "error": {
        const p = this.pending.get(m.id);
        const result = m.t === "result"
          ? { ok: true, matched: m.matched, passed: m.passed, delivered: m.delivered, failed: m.failed }
          : { ok: false, code: m.code, message: m.message };
        // Errors without a request, `refresh_refused` among them, go to `sync:error` as they are.
        if (p) this.settle(m.id, p, result);
        else if (m.t === "error") window.dispatchEvent(new CustomEvent("sync:error", { detail: result }));
        break;
      }
    }
  }

  apply(r, meta) {
    switch (r.kind) {
      case "event":
        for (const fn of this.listeners.get(r.name) || []) fn(r.payload, meta);
        window.dispatchEvent(new CustomEvent(`sync:${r.name}`, { detail: r.payload }));
        break;
      case "html":
        for (const el of document.querySelectorAll(r.selector)) {
          if (r.swap === "outer") el.outerHTML = r.html;
          else if (r.swap === "append") el.insertAdjacentHTML("beforeend", r.html);
          else if (r.swap === "prepend") el.insertAdjacentHTML("afterbegin", r.html);
          else el.innerHTML = r.html;
        }
        break;
      case "invalidate":
      case "set_query":
      case "remove_query":
      case "update_list": {
        const a = this.queryAdapter;
        if (!a || (r.kind === "update_list" && !a.update)) {
          window.dispatchEvent(new CustomEvent("sync:query", { detail: r }));
        } else if (r.kind === "invalidate") a.invalidate(r.key);
        else if (r.kind === "set_query") a.set(r.key, r.data);
        else if (r.kind === "remove_query") a.remove(r.key);
        else {
          // A cache that throws must not stop the reactions after this one (in a batch).
          try {
            a.update(r.key, (data) => updateList(data, r));
          } catch (e) {
            console.warn("sync: the query adapter failed to apply update_list", e);
          }
        }
        break;
      }
      case "reload":
        location.reload();
        break;
      case "navigate":
        if (this.spa) {
          history.pushState(null, "", r.to);
          window.dispatchEvent(new PopStateEvent("popstate"));
        } else location.assign(r.to);
        break;
      case "batch":
        for (const item of r.items) this.apply(item, meta);
        break;
    }
  }
}

// `<epoch>:<offset>`. The epoch is opaque to clients.
const CURSOR = /^[0-9A-Za-z_-]+:[0-9]+$/;

// The cursor a server-rendered page carries for its own path, if any.
function renderCursor() {
  const meta = document.querySelector('meta[name="sync-cursor"]');
  return meta ? meta.content : null;
}

/**
 * A location as the server sees it (section "Connecting" of docs/PROTOCOL.md), so that the page's path
 * compares with the paths in `located` and reactions: query and fragment dropped, empty segments and a
 * trailing slash collapsed, each segment percent-decoded, an encoded `/` kept as `%2F`. Escapes that do not
 * decode are left as they are (the server refuses such a path anyway).
 * @param {string} path
 */
function normalizePath(path) {
  let out = "";
  for (const segment of path.split(/[?#]/)[0].split("/")) {
    if (!segment) continue;
    const decoded = segment.replace(/(%[0-9A-Fa-f]{2})+/g, (run) => {
      try {
        return decodeURIComponent(run);
      } catch {
        return run;
      }
    });
    out += "/" + decoded.replaceAll("/", "%2F");
  }
  return out || "/";
}

// Views are shared by every snapshot and listener: frozen, so that none can change what the others see.
function freeze(value) {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) freeze(v);
  }
  return value;
}

let shared = null;

/**
 * The page's shared client, connected on first use with `options` (see `SyncClient`), or with
 * `window.syncOptions` when a page sets them before the first use.
 * @param {object} [options]
 */
export function sync(options) {
  return (shared ||= new SyncClient(options || globalThis.syncOptions || {}));
}

/**
 * Request a sync on the current route with the shared client (see `SyncClient#request`): a promise of the
 * outcome that rejects with a `SyncRequestError`; ignoring it is fine, an unhandled error is reported on
 * the console.
 * @param {SyncRequestOptions} request
 * @returns {Promise<SyncOutcome>}
 */
export function syncRequest(request) {
  return sync().request(request);
}

/**
 * Listen to `event` reactions named `name` on the shared client; returns an unsubscribe function.
 * @param {string} name
 * @param {(payload: any, meta: object) => void} fn
 */
export function on(name, fn) {
  return sync().on(name, fn);
}

/**
 * The syncs of the route `pattern` (as its folders spell it, e.g. `"/boards/[id]"`), for typed use: the
 * generated TypeScript declarations (`<prefix>/types.d.ts`) type `syncRequest` and `on` of the result by
 * the pattern's sync names, data and event payloads. At run time they are the shared client's
 * `syncRequest` and `on`: a request goes to the route of the page's current location, which is expected
 * to be on `pattern` (the server answers `not_on_route` when it is not).
 *
 * ```js
 * const board = route("/boards/[id]");
 * board.on("cardMoved", (card) => render(card));
 * await board.syncRequest({ name: "moveCard", data: { card: 3, to: "done" } });
 * ```
 * @template {string} P
 * @param {P} pattern
 * @returns {{ pattern: P, syncRequest: (request: SyncRequestOptions) => Promise<SyncOutcome>, on: (name: string, fn: (payload: any, meta: object) => void) => () => void }}
 */
export function route(pattern) {
  return Object.freeze({ pattern, syncRequest, on });
}

/**
 * Who is on the current page, as the shared client sees it (see `SyncClient#presence`).
 * @returns {{ path: string|null, count: number, users: ReadonlyArray<{ user: string, view: any }> }}
 */
export function presence() {
  return sync().presence();
}

/**
 * Call `fn(state, change)` after every presence change on the shared client (see `SyncClient#onPresence`);
 * returns an unsubscribe function.
 * @param {(state: object, change: { join: object[], leave: string[] }) => void} fn
 */
export function onPresence(fn) {
  return sync().onPresence(fn);
}

/**
 * Go to `url` in an SPA with the shared client, with the cursor of the data shown there (see
 * `SyncClient#navigate`).
 * @param {string} url
 * @param {{ cursor?: string, replace?: boolean, state?: any }} [options]
 */
export function navigate(url, options) {
  sync().navigate(url, options);
}

// Declarative use: <button data-sync="refreshData" data-sync-data='{"team":1}'>, or a <form data-sync="x">
// whose fields become the data.
function declared(e) {
  const el = e.target.closest && e.target.closest("[data-sync]");
  if (!el || (e.type === "click" && el.tagName === "FORM") || (e.type === "submit" && el !== e.target)) return;
  e.preventDefault();
  let data = null;
  if (el.dataset.syncData) data = JSON.parse(el.dataset.syncData);
  else if (el.tagName === "FORM") data = Object.fromEntries(new FormData(el));
  // Nobody can handle a declared request's error: report it once, readably.
  syncRequest({ name: el.dataset.sync, data }).catch((e) => console.error(String(e)));
}
document.addEventListener("click", declared);
document.addEventListener("submit", declared);

// Declarative presence, rendered on every change:
//   <ul data-sync-presence></ul>            one <li data-user="…"> per user: `view.name` if it is a string,
//                                           else the user key (another element gets a <ul> of them inside)
//   <div data-sync-presence>                or one copy of the template's elements per user, appended after
//     <template><img data-sync-attr="src:avatar,title:name"><span data-sync-field="name"></span></template>
//   </div>                                  what the element holds; `data-sync-field="a.b"` sets the text to
//                                           `view.a.b` ("" when missing; `user` is the user key) and
//                                           `data-sync-attr="attr:field,…"` sets attributes (kept as the
//                                           template has them when the field is missing)
//   <span data-sync-presence-count></span>  the count
// Views are other users' data: they reach the page only through textContent and setAttribute, never as HTML,
// event handlers, srcdoc or javascript: URLs. Rendered nodes carry `data-sync-rendered` and are replaced
// each time; the rest of the element is left alone.
function renderPresence(state) {
  for (const el of document.querySelectorAll("[data-sync-presence]")) {
    for (const old of el.querySelectorAll(":scope > [data-sync-rendered]")) old.remove();
    const template = el.querySelector(":scope > template");
    const list = template || /^[OU]L$/.test(el.tagName) ? el : document.createElement("ul");
    const out = document.createDocumentFragment();
    for (const { user, view } of state.users) {
      let nodes;
      if (template) {
        const copy = template.content.cloneNode(true);
        for (const node of copy.querySelectorAll("[data-sync-field]")) {
          node.textContent = field(user, view, node.dataset.syncField) ?? "";
        }
        for (const node of copy.querySelectorAll("[data-sync-attr]")) setAttrs(node, user, view);
        nodes = [...copy.children];
      } else {
        nodes = [document.createElement("li")];
        nodes[0].textContent = typeof view?.name === "string" ? view.name : user;
      }
      for (const node of nodes) {
        node.dataset.user = user;
        if (list === el) node.dataset.syncRendered = "";
      }
      out.append(...nodes);
    }
    if (list !== el) {
      list.dataset.syncRendered = "";
      list.append(out);
      el.append(list);
    } else el.append(out);
  }
  for (const el of document.querySelectorAll("[data-sync-presence-count]")) {
    el.textContent = String(state.count);
  }
}

// `view.a.b` for the path "a.b" (own properties only), as a string; `user` is the user key.
function field(user, view, path) {
  if (path === "user") return user;
  let v = view;
  for (const key of path.split(".")) v = v && typeof v === "object" && Object.hasOwn(v, key) ? v[key] : null;
  return v == null ? null : typeof v === "object" ? JSON.stringify(v) : String(v);
}

function setAttrs(node, user, view) {
  for (const pair of node.dataset.syncAttr.split(",")) {
    const i = pair.indexOf(":");
    const name = pair.slice(0, i).trim();
    const value = i > 0 ? field(user, view, pair.slice(i + 1).trim()) : null;
    if (value == null) continue;
    // Browsers ignore controls and spaces in a URL's scheme: so does this check.
    if (/^(on|srcdoc$)/i.test(name) || /^(javascript|vbscript):/i.test(value.replace(/[\0- ]/g, ""))) continue;
    node.setAttribute(name, value);
  }
}

// A page with presence elements needs no code: they connect the shared client once the page is parsed (so a
// page script can still call `sync(options)` first), unless a client exists already, and show it (empty
// until the server's first snapshot).
function bootPresence() {
  if (!document.querySelector("[data-sync-presence],[data-sync-presence-count]")) return;
  renderPresence((current || sync()).presence());
}
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", bootPresence);
else setTimeout(bootPresence);
