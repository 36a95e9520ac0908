use axum::response::Html;

pub async fn show() -> Html<&'static str> {
    Html(r##"<!doctype html>
<input id="name" placeholder="Your name"> <button id="wave">Wave</button>
<ul id="waves"></ul>
<script type="module">
  import { syncRequest, on } from "/_sync/client.js";
  on("wave", (from) => {
    const li = document.createElement("li");
    li.textContent = `${from} waved`;
    document.querySelector("#waves").append(li);
  });
  document.querySelector("#wave").onclick = () =>
    syncRequest({ name: "wave", data: { from: document.querySelector("#name").value || "someone" } });
</script>"##)
}
