/**
 * Redis Cluster places a key by its hash tag: the text between the first `{` and the next `}`,
 * when that is not empty; else by the whole key. Keys with the same tag share a slot, so one
 * command or script may touch them together; keys with different tags may not.
 */
export function hashTagOf(key: string): string {
  const open = key.indexOf('{');
  if (open < 0) return key;
  const close = key.indexOf('}', open + 1);
  if (close <= open + 1) return key;
  return key.slice(open + 1, close);
}

/** `keys` in groups that each share one hash tag, in first-seen order. */
export function groupByHashTag(keys: Iterable<string>): string[][] {
  const groups = new Map<string, string[]>();
  for (const key of keys) {
    const tag = hashTagOf(key);
    let group = groups.get(tag);
    if (group === undefined) {
      group = [];
      groups.set(tag, group);
    }
    group.push(key);
  }
  return [...groups.values()];
}
