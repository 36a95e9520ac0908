// expect: TS2322 "wave"
// `wave` is `/boards/[id]`'s, not `/dashboard`'s.
import { route } from "/_sync/client.js";
void route("/dashboard").syncRequest({ name: "wave" });
