// sync-client.d.ts: TypeScript declarations of the browser client (sync-client.js), without any app's
// routes: every sync name is a string and every payload `unknown`. Served at `<prefix>/client.d.ts`.
//
// An app built with sync-build has better: `<prefix>/types.d.ts` (the file `sync_types.d.ts` in the
// build's OUT_DIR) declares this same module with the app's routes, sync names, data and event payloads.
// Use one of the two files, not both. The API below is sync-build's `client_api.d.ts`, kept identical by a
// test.

declare module "*/_sync/client.js" {
  /** No routes known: any pattern, any sync name, any data, any event. */
  export interface SyncRoutes {
    [pattern: string]: { [name: string]: { data: unknown; events: { [event: string]: unknown } } };
  }

  /** A route pattern of this app, e.g. `"/boards/[id]"` (`"/"` for the root). */
  export type RoutePattern = keyof SyncRoutes & string;
  /** The sync names of route `R`. */
  export type SyncName<R extends RoutePattern> = keyof SyncRoutes[R] & string;
  /** What sync `N` of route `R` takes as `data`: its `Data` type as serde reads it. */
  export type SyncData<R extends RoutePattern, N extends SyncName<R>> =
    SyncRoutes[R][N] extends { data: infer D } ? D : never;

  /** How a request went: the sync's recipients, those its filter passed, delivered to, and failed. */
  export interface SyncOutcome {
    matched: number;
    passed: number;
    delivered: number;
    failed: number;
  }
  /** What `onResult` gets (and `sync:result` / `sync:error` events carry). */
  export type SyncResult = ({ ok: true } & SyncOutcome) | { ok: false; code: SyncErrorCode; message: string };
  /** The wire's stable error codes (docs/PROTOCOL.md, "Error codes"); later versions may add some. */
  export type SyncErrorCode =
    | "malformed" | "unknown_type" | "unknown_name" | "not_on_route" | "no_location" | "bad_data"
    | "gate_refused" | "too_large" | "binary_unsupported" | "rate_limited" | "overloaded" | "bad_path"
    | "refresh_refused" | "unavailable" | "closed" | (string & {});
  /** A request the server refused, or that the connection lost: what `syncRequest`'s promise rejects with. */
  export class SyncRequestError extends Error {
    readonly name: "SyncRequestError";
    /** The wire error code, e.g. `bad_data`. */
    readonly code: SyncErrorCode;
    /** The sync that was requested. */
    readonly syncName: string;
  }

  /** One request of sync `N`: `data` may be left out when the sync's `Data` accepts `null`. */
  export type SyncRequestOf<N extends string, D> = {
    name: N;
    echo?: boolean;
    onResult?: (result: SyncResult) => void;
  } & (null extends D ? { data?: D } : { data: D });
  /** A request of any sync of route `R`. */
  export type SyncRequestFor<R extends RoutePattern> = {
    [N in SyncName<R>]: SyncRequestOf<N, SyncData<R, N>>;
  }[SyncName<R>];
  /** A request of any sync of any route. */
  export type AnySyncRequest = { [R in RoutePattern]: SyncRequestFor<R> }[RoutePattern];

  type EventsOf<R extends RoutePattern> = {
    [N in SyncName<R>]: SyncRoutes[R][N] extends { events: infer E } ? E : never;
  }[SyncName<R>];
  type KeysOfEach<T> = T extends unknown ? keyof T & string : never;
  type ValueInEach<T, K extends string> = T extends unknown ? (K extends keyof T ? T[K] : never) : never;
  /** The event names the syncs of route `R` send (`Reaction::event`). */
  export type EventName<R extends RoutePattern> = KeysOfEach<EventsOf<R>>;
  /** The payload of event `E` on route `R` (`unknown` where the generator could not tell). */
  export type EventPayload<R extends RoutePattern, E extends string> = ValueInEach<EventsOf<R>, E>;
  /** An event name of any route. */
  export type AnyEventName = { [R in RoutePattern]: EventName<R> }[RoutePattern];
  /** The payload of event `E` on any route. */
  export type AnyEventPayload<E extends string> = { [R in RoutePattern]: EventPayload<R, E> }[RoutePattern];

  /** The reaction frame an event came in (docs/PROTOCOL.md). */
  export interface ReactionMeta {
    seq: number;
    path: string;
    route: string | null;
    name: string;
    cursor?: string;
  }
  /** Stops a listener. */
  export type Unsubscribe = () => void;

  /** One user on the page, as the app's presence view shows them (other users' data: render it as text). */
  export interface PresenceUser {
    readonly user: string;
    readonly view: unknown;
  }
  /** Who is on the current page. */
  export interface PresenceState {
    readonly path: string | null;
    readonly count: number;
    readonly users: ReadonlyArray<PresenceUser>;
  }
  /** What changed in a presence update. */
  export interface PresenceChange {
    join: PresenceUser[];
    leave: string[];
  }
  /** The connection's state. */
  export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";
  /** Where `invalidate` / `set_query` / `remove_query` reactions go. */
  export interface QueryAdapter {
    invalidate(key: unknown): void;
    set(key: unknown, data: unknown): void;
    remove(key: unknown): void;
  }
  /** The part of TanStack Query's `QueryClient` the adapter uses. */
  export interface TanstackQueryClient {
    invalidateQueries(filters: { queryKey: any }): unknown;
    setQueryData(queryKey: any, data: any): unknown;
    removeQueries(filters: { queryKey: any }): unknown;
  }
  /** `SyncClient`'s options (see client.js). */
  export interface SyncOptions {
    url?: string;
    sseUrl?: string;
    transport?: "auto" | "websocket" | "sse";
    token?: string | (() => string);
    refreshToken?: () => Promise<string>;
    spa?: boolean;
    cursor?: string | null;
  }
  /** `navigate`'s options. */
  export interface NavigateOptions {
    cursor?: string;
    replace?: boolean;
    state?: unknown;
  }

  /** The syncs of one route: requests and events checked against that route's declarations. */
  export interface RouteClient<R extends RoutePattern> {
    /** Request a sync of this route; the promise rejects with a `SyncRequestError`. */
    syncRequest(request: SyncRequestFor<R>): Promise<SyncOutcome>;
    /** Listen to an event this route's syncs send; returns an unsubscribe function. */
    on<E extends EventName<R>>(event: E, listener: (payload: EventPayload<R, E>, meta: ReactionMeta) => void): Unsubscribe;
    on(event: string, listener: (payload: unknown, meta: ReactionMeta) => void): Unsubscribe;
  }

  /** One live connection to the sync hub (see client.js). */
  export class SyncClient extends EventTarget {
    constructor(options?: SyncOptions);
    readonly url: string;
    readonly sseUrl: string;
    readonly transport: "websocket" | "sse";
    readonly state: ConnectionState;
    readonly lastSeq: number;
    request(request: AnySyncRequest): Promise<SyncOutcome>;
    on<E extends AnyEventName>(event: E, listener: (payload: AnyEventPayload<E>, meta: ReactionMeta) => void): Unsubscribe;
    on(event: string, listener: (payload: unknown, meta: ReactionMeta) => void): Unsubscribe;
    onState(listener: (state: ConnectionState) => void): Unsubscribe;
    presence(): PresenceState;
    onPresence(listener: (state: PresenceState, change: PresenceChange) => void): Unsubscribe;
    setQueryAdapter(adapter: QueryAdapter): void;
    navigate(url: string, options?: NavigateOptions): void;
    cursor(): { readonly path: string; readonly cursor: string } | null;
    close(): void;
  }

  /** The page's shared client, connected on first use. */
  export function sync(options?: SyncOptions): SyncClient;
  /** Request a sync of any route (the server checks it is the page's): see `route()` for one route's. */
  export function syncRequest(request: AnySyncRequest): Promise<SyncOutcome>;
  /** The syncs of route `pattern`, typed: `route("/boards/[id]").syncRequest({ name: "wave" })`. */
  export function route<R extends RoutePattern>(pattern: R): RouteClient<R>;
  /** Listen to an event on the shared client; returns an unsubscribe function. */
  export function on<E extends AnyEventName>(event: E, listener: (payload: AnyEventPayload<E>, meta: ReactionMeta) => void): Unsubscribe;
  export function on(event: string, listener: (payload: unknown, meta: ReactionMeta) => void): Unsubscribe;
  /** Who is on the current page. */
  export function presence(): PresenceState;
  /** Call `listener` after every presence change; returns an unsubscribe function. */
  export function onPresence(listener: (state: PresenceState, change: PresenceChange) => void): Unsubscribe;
  /** Go to `url` in an SPA, with the cursor of the data shown there. */
  export function navigate(url: string, options?: NavigateOptions): void;
  /** A query-cache adapter for TanStack Query: `sync().setQueryAdapter(tanstackAdapter(queryClient))`. */
  export function tanstackAdapter(queryClient: TanstackQueryClient): QueryAdapter;
}
