// expect: TS2322 Type 'number' is not assignable to type 'string'
// `team` is a string.
import { route } from "/_sync/client.js";
void route("/dashboard").syncRequest({ name: "refreshData", data: { team: 7 } });
