// The district's township/village tree from GET /api/v1/composer (viewer), fetched once per page load, for
// naming area codes and choosing a village in filters.

import { api } from "./api.js";

let loading = null;

/** The composer's options (areas, groups, channels, hazards, colours, statuses); null if unavailable. */
export function composerOptions() {
  if (!loading) {
    loading = api("/api/v1/composer")
      .then(({ data }) => data)
      .catch(() => {
        loading = null; // try again next time
        return null;
      });
  }
  return loading;
}

/** [{code, name, kind, depth}] of the tree, depth first. */
export function flatten(nodes, depth = 0, out = []) {
  for (const node of nodes || []) {
    out.push({ code: node.code, name: node.name, kind: node.kind, depth });
    flatten(node.children, depth + 1, out);
  }
  return out;
}

/** code → name for every area in the tree. */
export async function areaNames() {
  const options = await composerOptions();
  return new Map(flatten(options ? options.areas : []).map((a) => [a.code, a.name]));
}
