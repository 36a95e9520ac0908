// expect: TS2322 "refresh"
// A name the route does not define.
import { route } from "/_sync/client.js";
void route("/dashboard").syncRequest({ name: "refresh", data: { team: "red" } });
