// expect: TS2741 Property 'text' is missing
// `/home`'s `refreshData` needs `text` (and `/dashboard`'s `team` is not it).
import { route } from "/_sync/client.js";
void route("/home").syncRequest({ name: "refreshData", data: {} });
