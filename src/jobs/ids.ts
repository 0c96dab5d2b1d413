/** Job and backup ids: ULIDs (26 Crockford base32 characters), one subject token, sortable by creation time. */
import { randomBytes } from "node:crypto";

const Alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
let lastTime = -1;
let lastRandom = new Uint8Array(10);

export function newId(now = Date.now()): string {
  if (now <= lastTime) {
    // Same millisecond (or a clock step back): keep order by incrementing the random part.
    now = lastTime;
    for (let i = lastRandom.length - 1; i >= 0; i--) {
      lastRandom[i] = ((lastRandom[i] as number) + 1) & 0xff;
      if (lastRandom[i] !== 0) break;
    }
  } else {
    lastTime = now;
    lastRandom = new Uint8Array(randomBytes(10));
  }
  let time = "";
  for (let t = now, i = 0; i < 10; i++, t = Math.floor(t / 32)) time = Alphabet[t % 32] + time;
  let random = "";
  let bits = 0;
  let value = 0;
  for (const byte of lastRandom) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      random += Alphabet[(value >> bits) & 31];
    }
  }
  return time + random;
}

/** The creation time a ULID carries. */
export function idTime(id: string): Date {
  let t = 0;
  for (const c of id.slice(0, 10)) t = t * 32 + Alphabet.indexOf(c);
  return new Date(t);
}
