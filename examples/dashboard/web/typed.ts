// A typed page script for the dashboard example, checked by `tests/typescript.rs` with `tsc --strict`
// against the declarations the example's build generates (served at `/_sync/types.d.ts`).
import {
  SyncRequestError,
  navigate,
  on,
  onPresence,
  presence,
  route,
  sync,
  syncRequest,
  tanstackAdapter,
  type SyncOutcome,
} from "/_sync/client.js";

// Each route's syncs, checked against that route.
const dashboard = route("/dashboard");
const home = route("/home");
const board = route("/boards/[id]");

async function post(text: string): Promise<number> {
  try {
    const outcome: SyncOutcome = await home.syncRequest({ name: "refreshData", data: { text } });
    return outcome.delivered;
  } catch (e) {
    if (e instanceof SyncRequestError && e.code === "bad_data") return 0;
    throw e;
  }
}

// `wave`'s data is `()`: it may be left out, or be `null`.
void board.syncRequest({ name: "wave" });
void board.syncRequest({ name: "wave", data: null, echo: false });
void dashboard.syncRequest({
  name: "refreshData",
  data: { team: "red" },
  onResult: (result) => {
    if (result.ok) console.log(result.matched, result.passed, result.failed);
    else console.warn(result.code, result.message);
  },
});

// Without a route: any route's sync.
void syncRequest({ name: "refreshData", data: { team: "blue" } });
void syncRequest({ name: "refreshData", data: { text: "hello" } });

// The example's reactions are HTML swaps, not events: any listener gets `unknown`.
const stop = on("anything", (payload, meta) => console.log(payload, meta.seq, meta.path));
stop();

const client = sync({ transport: "auto", spa: true });
client.onState((state) => console.log(state === "open"));
const here = presence();
console.log(here.count, here.users.map((u) => u.user));
onPresence((state, change) => console.log(state.path, change.join.length, change.leave));
navigate("/boards/7", { replace: true });
client.setQueryAdapter(
  tanstackAdapter({
    invalidateQueries: () => undefined,
    setQueryData: () => undefined,
    removeQueries: () => undefined,
  }),
);
void post("hi");
