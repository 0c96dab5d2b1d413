/**
 * Cutting a reply's list to what fits: a reply must fit the connection's max_payload whatever its
 * entries hold (a tag, a server name, a stream's peers), or it could not be sent at all.
 */

/**
 * How many of `items`, from `from` on, fit in `maxBytes` of JSON once `usedBytes` are taken by the
 * rest of the reply, each with its comma; at most `limit`, and always at least one when one is
 * left (every entry fits a message on its own).
 */
export function countFitting(items: readonly unknown[], from: number, usedBytes: number, maxBytes: number, limit = Infinity): number {
  let bytes = usedBytes;
  let n = 0;
  for (let i = from; i < items.length && n < limit; i++, n++) {
    const size = Buffer.byteLength(JSON.stringify(items[i])) + 1;
    if (n > 0 && bytes + size > maxBytes) break;
    bytes += size;
  }
  return n;
}
