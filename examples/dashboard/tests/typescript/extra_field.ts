// expect: TS2353 'bogus' does not exist
// A field `Data` does not have.
import { route } from "/_sync/client.js";
void route("/dashboard").syncRequest({ name: "refreshData", data: { team: "red", bogus: 1 } });
