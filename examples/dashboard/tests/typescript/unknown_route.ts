// expect: TS2345 "/boards/7"
// A route is named by its pattern, not a path.
import { route } from "/_sync/client.js";
void route("/boards/7");
