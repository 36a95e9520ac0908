// `tick`'s payload is a number (the filter's `u64`), not a string: must not compile.
import { route } from "/_sync/client.js";
route("/dashboard").on("tick", (s: string) => s);
