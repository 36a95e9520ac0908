// query-cache.js: the query-cache side of the browser client (served beside it, at `<prefix>/query-cache.js`,
// and re-exported by it): the TanStack Query adapter and the list operations of `update_list` reactions.
// A plain ES module with no dependencies; nothing here touches the connection.

/**
 * @typedef {object} ListUpdate An `update_list` reaction (docs/PROTOCOL.md): one change to the list held
 * by every query-cache entry whose key starts with `key`.
 * @property {"update_list"} kind
 * @property {any[]} key The query key (a prefix of the entries' keys).
 * @property {"prepend"|"append"|"replace"|"remove"} op `prepend` / `append` add `item`; `replace` puts
 *   `item` in place of every element whose `id_field` equals the item's; `remove` drops every element
 *   whose `id_field` equals `id` (strict equality: `7` is not `"7"`).
 * @property {any} [item] The element (`prepend`, `append`, `replace`).
 * @property {string} [id_field] The field that identifies an element (`replace`, `remove`).
 * @property {any} [id] The identity to remove (`remove`).
 * @property {string} [at] The list is the entry's field `at` (in each page, with `infinite`) instead of
 *   the entry (page) itself.
 * @property {boolean} [infinite] The entry is an infinite query's `{ pages, pageParams }`: `prepend` goes to
 *   the first page, `append` to the last, `replace` and `remove` go through every page.
 */

/**
 * The entry's data after `update`, as a new value (`data` is never changed in place, as TanStack Query
 * expects). Data not in the expected shape (no array where the list should be, an infinite query without
 * pages) is returned as it is, with a console warning; `undefined` (an entry not loaded yet) stays
 * `undefined`. For adapters of other caches, and for `sync:query` listeners without an adapter.
 *
 * ```js
 * addEventListener("sync:query", ({ detail: r }) => {
 *   if (r.kind === "update_list") store.todos = updateList(store.todos, r);
 * });
 * ```
 * @template T
 * @param {T} data
 * @param {ListUpdate} update
 * @returns {T}
 */
export function updateList(data, update) {
  if (data === undefined) return data;
  const refuse = (why) => {
    console.warn(`sync: update_list (${update.op}) on ${JSON.stringify(update.key)} left the entry alone: ${why}`);
    return data;
  };
  const problem = invalid(update);
  if (problem) return refuse(problem);
  if (!update.infinite) {
    const list = listIn(data, update.at);
    return list ? withList(data, update.at, changed(list, update)) : refuse(shapeOf(update.at));
  }
  if (!data || !Array.isArray(data.pages)) return refuse("it is not an infinite query's { pages, pageParams }");
  const { pages } = data;
  if (!pages.length) return refuse("the infinite query has no pages");
  const target = update.op === "prepend" ? 0 : update.op === "append" ? pages.length - 1 : -1;
  const next = [];
  for (const [i, page] of pages.entries()) {
    if (target !== -1 && i !== target) next.push(page);
    else {
      const list = listIn(page, update.at);
      if (!list) return refuse(`page ${i}: ${shapeOf(update.at)}`);
      next.push(withList(page, update.at, changed(list, update)));
    }
  }
  return { ...data, pages: next };
}

// What is wrong with the operation itself, if anything (a newer server's op, a replace without an id).
function invalid({ op, id_field, item }) {
  if (!["prepend", "append", "replace", "remove"].includes(op)) return `unknown operation ${JSON.stringify(op)}`;
  if ((op === "replace" || op === "remove") && typeof id_field !== "string") return "no id_field";
  if (op === "replace" && !(item && typeof item === "object" && Object.hasOwn(item, id_field))) {
    return `the item has no ${JSON.stringify(id_field)}`;
  }
  return null;
}

function listIn(data, at) {
  const list = at == null ? data : data && typeof data === "object" ? data[at] : undefined;
  return Array.isArray(list) ? list : null;
}

function withList(data, at, list) {
  return at == null ? list : { ...data, [at]: list };
}

function shapeOf(at) {
  return at == null ? "it is not an array" : `its ${JSON.stringify(at)} is not an array`;
}

function changed(list, { op, item, id_field, id }) {
  const same = (el, value) => el !== null && typeof el === "object" && el[id_field] === value;
  if (op === "prepend") return [item, ...list];
  if (op === "append") return [...list, item];
  if (op === "replace") return list.map((el) => (same(el, item[id_field]) ? item : el));
  return list.filter((el) => !same(el, id));
}

/**
 * A query-cache adapter for TanStack Query: `sync().setQueryAdapter(tanstackAdapter(queryClient))`.
 * `invalidate` and `remove` act on every entry whose key starts with the given key, `set` on the one
 * entry, `update` (list operations) on every cached entry under the key; entries not in the cache are left
 * alone, and nothing is fetched.
 * @param {any} queryClient a `QueryClient` of `@tanstack/query-core` (or a framework package) v5
 */
export function tanstackAdapter(queryClient) {
  return {
    invalidate: (queryKey) => queryClient.invalidateQueries({ queryKey }),
    set: (queryKey, data) => queryClient.setQueryData(queryKey, data),
    remove: (queryKey) => queryClient.removeQueries({ queryKey }),
    update: (queryKey, updater) => queryClient.setQueriesData({ queryKey }, updater),
  };
}
