// sync-client.js: the browser client of the sync framework (protocol v1, see docs/PROTOCOL.md).
// A plain ES module with no dependencies, served by the runtime at `/_sync/client.js`.
//
//   import { syncRequest, on } from "/_sync/client.js";
//   on("refreshData", (payload) => render(payload));
//   syncRequest({ name: "refreshData", data: { team: 1 } });

const MAX_QUEUE = 256;

/**
 * One live connection to the sync hub. It reports `location.pathname` on connect and on every SPA
 * navigation, reconnects with backoff and resumes (the server replays what was missed), and applies the
 * reactions it receives.
 */
export class SyncClient extends EventTarget {
  /**
   * @param {object} [options]
   * @param {string} [options.url] WebSocket URL; default `ws(s)://<host>/_sync/ws`.
   * @param {string} [options.token] Sent as `?token=`; cookie sessions need nothing.
   * @param {boolean} [options.spa] Apply `navigate` reactions with `history.pushState` instead of a page load.
   */
  constructor(options = {}) {
    super();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.url = options.url || `${scheme}//${location.host}/_sync/ws`;
    this.token = options.token;
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
    this.watchNavigation();
    this.open();
  }

  open() {
    // ack=1: the server keeps reactions until acknowledged, so a resume never misses one.
    const params = new URLSearchParams({ path: location.pathname, ack: "1" });
    if (this.token) params.set("token", this.token);
    if (this.resumeKey) {
      params.set("resume", this.resumeKey);
      params.set("last_seq", String(this.lastSeq));
    }
    const ws = new WebSocket(`${this.url}?${params}`);
    this.ws = ws;
    ws.onmessage = (e) => this.receive(e.data);
    ws.onopen = () => {
      this.attempt = 0;
      if (this.path !== location.pathname) this.nav();
    };
    ws.onclose = (e) => {
      clearInterval(this.pinger);
      if (this.ws !== ws) return;
      this.failPending("closed", "the connection closed");
      // 4003: the server disconnected this user on purpose; do not come back.
      if (e.code === 4003 || this.state === "closed") return this.setState("closed");
      this.setState("reconnecting");
      const delay = Math.random() * Math.min(10000, 250 * 2 ** this.attempt++);
      setTimeout(() => this.open(), delay);
    };
  }

  /** Close for good. */
  close() {
    this.setState("closed");
    this.ws && this.ws.close(1000);
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
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

  send(frame) {
    if (this.state === "open" && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(frame));
    } else {
      if (this.queue.length >= MAX_QUEUE) {
        console.warn("sync: request queue full; dropping the oldest request");
        this.queue.shift();
      }
      this.queue.push(frame);
    }
  }

  /**
   * Request a sync on the current route. Fire-and-forget: returns nothing. `onResult` (optional) gets
   * `{ ok: true, matched, passed, delivered, failed }` or `{ ok: false, code, message }`; the same goes to
   * `sync:result` / `sync:error` events on `window`.
   * @param {{ name: string, data?: any, echo?: boolean, onResult?: (result: object) => void }} request
   */
  request({ name, data = null, echo = true, onResult }) {
    const id = this.nextId++;
    this.pending.set(id, { name, onResult });
    this.send({ t: "req", id, name, data, echo });
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
   * Where `invalidate` / `set_query` / `remove_query` reactions go, e.g. `tanstackAdapter(queryClient)`.
   * Without one they are dispatched as `sync:query` events on `window`.
   * @param {{ invalidate(key: any): void, set(key: any, data: any): void, remove(key: any): void }} adapter
   */
  setQueryAdapter(adapter) {
    this.queryAdapter = adapter;
  }

  nav() {
    this.path = location.pathname;
    if (this.state === "open") this.ws.send(JSON.stringify({ t: "nav", path: this.path }));
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

  failPending(code, message) {
    for (const [id, p] of this.pending) this.settle(id, p, { ok: false, code, message });
    this.pending.clear();
  }

  settle(id, p, result) {
    this.pending.delete(id);
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
    if (this.lastSeq <= this.acked || this.ws?.readyState !== WebSocket.OPEN) return;
    this.acked = this.lastSeq;
    this.ws.send(`{"t":"ack","seq":${this.acked}}`);
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
        if (!m.resumed) this.lastSeq = 0;
        this.acked = this.lastSeq;
        this.window = m.window || 0;
        this.resumeKey = m.resume;
        this.setState("open");
        for (const frame of this.queue.splice(0)) this.ws.send(JSON.stringify(frame));
        clearInterval(this.pinger);
        this.pinger = setInterval(() => this.ws.send('{"t":"ping"}'), 25000);
        break;
      case "resync": {
        // Too much was missed to replay: the page must reload its data.
        const e = new CustomEvent("sync:resync", { cancelable: true });
        if (window.dispatchEvent(e)) location.reload();
        break;
      }
      case "reaction":
        if (m.seq <= this.lastSeq) return;
        this.lastSeq = m.seq;
        this.apply(m.reaction, m);
        this.ack();
        break;
      case "result":
      case "error": {
        const p = this.pending.get(m.id);
        const result = m.t === "result"
          ? { ok: true, matched: m.matched, passed: m.passed, delivered: m.delivered, failed: m.failed }
          : { ok: false, code: m.code, message: m.message };
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
      case "remove_query": {
        const a = this.queryAdapter;
        if (!a) window.dispatchEvent(new CustomEvent("sync:query", { detail: r }));
        else if (r.kind === "invalidate") a.invalidate(r.key);
        else if (r.kind === "set_query") a.set(r.key, r.data);
        else a.remove(r.key);
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

/**
 * A query-cache adapter for TanStack Query: `sync.setQueryAdapter(tanstackAdapter(queryClient))`.
 * @param {any} queryClient a `QueryClient`
 */
export function tanstackAdapter(queryClient) {
  return {
    invalidate: (queryKey) => queryClient.invalidateQueries({ queryKey }),
    set: (queryKey, data) => queryClient.setQueryData(queryKey, data),
    remove: (queryKey) => queryClient.removeQueries({ queryKey }),
  };
}

let shared = null;

/** The page's shared client, connected on first use. */
export function sync() {
  return (shared ||= new SyncClient());
}

/**
 * Request a sync on the current route with the shared client (see `SyncClient#request`).
 * @param {{ name: string, data?: any, echo?: boolean, onResult?: (result: object) => void }} request
 */
export function syncRequest(request) {
  sync().request(request);
}

/**
 * Listen to `event` reactions named `name` on the shared client; returns an unsubscribe function.
 * @param {string} name
 * @param {(payload: any, meta: object) => void} fn
 */
export function on(name, fn) {
  return sync().on(name, fn);
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
  syncRequest({ name: el.dataset.sync, data });
}
document.addEventListener("click", declared);
document.addEventListener("submit", declared);
