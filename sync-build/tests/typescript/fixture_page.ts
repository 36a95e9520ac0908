// A page on the fixture app's routes, checked with `tsc --strict` against the golden declarations: the
// event payloads the generator could see are typed, the others are `unknown`.
import { on, route, syncRequest } from "/_sync/client.js";

const dashboard = route("/dashboard");
dashboard.on("tick", (n) => {
  const count: number = n;
  return count;
});
dashboard.on("flaky", (text) => text.toUpperCase());
dashboard.on("brittle", (payload) => {
  // `json!`: not known.
  const unseen: unknown = payload;
  return unseen;
});
route("/").on("hello", (greeting: string) => greeting);
on("counter", (n: number) => n + 1);
// A name no `react` sends literally may still come (from a helper): `unknown`.
on("elsewhere", (payload: unknown) => payload);

void syncRequest({ name: "hello", data: "hi" });
void route("/posts/[id]").syncRequest({ name: "newComment", data: { text: "first" } });
void route("/about").syncRequest({ name: "ping" });
void dashboard.syncRequest({ name: "flaky", data: {} });
