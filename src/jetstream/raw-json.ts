/**
 * Lossless access to the members of a JSON object. Stream configurations and states pass
 * through this service as the server wrote them: JSON.parse would round 64-bit integers
 * (nanosecond durations, sequences) and we must not drop fields a newer server adds.
 */

/** The top-level members of a JSON object, each value as its exact source text. */
export function rawMembers(json: string): Map<string, string> {
  const parsed: unknown = JSON.parse(json); // validates; the scan below may then trust the syntax
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new TypeError("expected a JSON object");
  }
  const members = new Map<string, string>();
  let i = skipSpace(json, json.indexOf("{") + 1);
  while (json[i] !== "}") {
    const keyEnd = skipValue(json, i);
    const key = JSON.parse(json.slice(i, keyEnd)) as string;
    const valueStart = skipSpace(json, skipSpace(json, keyEnd) + 1); // past ':'
    const valueEnd = skipValue(json, valueStart);
    members.set(key, json.slice(valueStart, valueEnd));
    i = skipSpace(json, valueEnd);
    if (json[i] === ",") i = skipSpace(json, i + 1);
  }
  return members;
}

/** A JSON object from members whose values are already JSON text. */
export function rawObject(members: Iterable<[string, string]>): string {
  const parts: string[] = [];
  for (const [key, value] of members) parts.push(`${JSON.stringify(key)}:${value}`);
  return `{${parts.join(",")}}`;
}

function skipSpace(s: string, i: number): number {
  while (i < s.length && (s[i] === " " || s[i] === "\n" || s[i] === "\r" || s[i] === "\t")) i++;
  return i;
}

/** The index just past the JSON value that starts at i. */
function skipValue(s: string, i: number): number {
  const c = s[i];
  if (c === '"') {
    for (i++; s[i] !== '"'; i++) if (s[i] === "\\") i++;
    return i + 1;
  }
  if (c === "{" || c === "[") {
    let depth = 0;
    for (; i < s.length; i++) {
      const d = s[i];
      if (d === '"') i = skipValue(s, i) - 1;
      else if (d === "{" || d === "[") depth++;
      else if (d === "}" || d === "]") {
        depth--;
        if (depth === 0) return i + 1;
      }
    }
    return i;
  }
  while (i < s.length && !",}] \n\r\t".includes(s[i] as string)) i++;
  return i;
}
