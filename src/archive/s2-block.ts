/**
 * One S2 block (klauspost/compress s2, decode_other.go): a uvarint decoded length, then tagged
 * elements: literals, and copies of 1, 2 or 4 offset bytes, where a 1-byte copy with offset 0 is
 * S2's repeat of the previous offset (with its own length extension). Snappy blocks are a subset.
 * Written by hand: no npm package decodes S2.
 *
 * Every check of the Go decoder is here (a literal or copy past the block's declared end, an
 * offset before the block's start or 0 before any offset was set, a short block), so what it
 * refuses, this refuses.
 */

/**
 * Below this, copying 4 bytes at a time through DataViews beats a `set`/`copyWithin` call (its
 * fixed cost is some 50 ns here; a byte loop costs about 3 ns a byte, a word 1 ns).
 */
const ShortCopy = 64;

/**
 * Per tag byte, as Snappy's C++ decoder has it: the element's length (bits 0-7; 255 for a literal
 * whose length follows the tag), a 1-byte-offset copy's high offset bits (8-10) and how many
 * offset bytes follow the tag (11-13), so the fast path reads a copy without branching on its kind.
 */
const Element = new Uint16Array(256);
for (let tag = 0; tag < 256; tag++) {
  const x = tag >>> 2;
  const kind = tag & 3;
  if (kind === 0) Element[tag] = x < 60 ? x + 1 : 255;
  else if (kind === 1) Element[tag] = ((x & 7) + 4) | ((tag >>> 5) << 8) | (1 << 11);
  else Element[tag] = (x + 1) | ((kind === 2 ? 2 : 4) << 11);
}
/** Keeps a copy's offset bytes of the 4 read after its tag. */
const TrailerMask = new Int32Array([0, 0xff, 0xffff, 0xffffff, -1]);

/**
 * Whether 8 bytes moved through DataView get/setFloat64 keep their bits when they spell a NaN
 * (the spec lets an engine canonicalize it). V8 keeps them in every tier; were it not so, the fast
 * path, which copies 8 bytes at a time this way, stays off (a CRC mismatch would show it anyway).
 */
const Float64KeepsBits = (() => {
  const v = new DataView(new ArrayBuffer(16));
  v.setUint32(0, 1, true);
  v.setUint32(4, 0x7ff00000, true); // a signalling NaN
  v.setFloat64(8, v.getFloat64(0, true), true);
  return v.getUint32(8, true) === 1 && v.getUint32(12, true) === 0x7ff00000;
})();

/**
 * The decoded length declared at `src[start]`, and where the elements begin; null when the
 * uvarint is malformed, longer than 5 bytes or above 2^32-1 (Go's decodedLen).
 */
export function blockHeader(src: Uint8Array, start: number, end: number): { length: number; elements: number } | null {
  let value = 0;
  let scale = 1;
  for (let i = start; i < end && i < start + 5; i++) {
    const b = src[i]!;
    value += (b & 0x7f) * scale;
    if (b < 0x80) return value > 0xffffffff ? null : { length: value, elements: i + 1 };
    scale *= 128;
  }
  return null;
}

/**
 * Decodes the elements in `src[s, end)` into all of `dst` (its length is the declared one).
 * Returns null when done, else what is wrong.
 */
export function decodeBlock(src: Uint8Array, s: number, end: number, dst: Uint8Array): string | null {
  const dLen = dst.length;
  // Short copies go a word at a time, and may write up to 3 bytes past their end (later
  // elements overwrite them; the block must fill dst exactly) or read past a literal's end.
  const dv = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  const sv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const srcLen = src.length;
  let d = 0;
  let offset = 0;
  let length = 0;
  // Where the fast path may run: every element it takes (a literal of at most 16 bytes, a copy
  // of at most 64 from at least 4 back) fits in both arrays from there, so only its offset is
  // checked. It moves 8 or 16 bytes whatever the length, past the element's end (later elements
  // overwrite them; the block must fill dst exactly): fewer, unconditional moves beat exact ones.
  const fastSrc = end - 17;
  const fastDst = Float64KeepsBits ? dLen - 64 : -1;
  while (s < end) {
    while (s < fastSrc && d < fastDst) {
      const tag = src[s]!;
      const entry = Element[tag]!;
      const n = entry & 0xff;
      if ((tag & 3) === 0) {
        if (n > 16) break; // longer literals: the careful path
        dv.setFloat64(d, sv.getFloat64(s + 1, true), true);
        if (n > 8) dv.setFloat64(d + 8, sv.getFloat64(s + 9, true), true);
        d += n;
        s += n + 1;
        continue;
      }
      const extra = entry >>> 11;
      let o = (sv.getInt32(s + 1, true) & TrailerMask[extra]!) | (entry & 0x700);
      if (o === 0) {
        // A repeat (an offset of 0 in a 1-byte-offset copy; elsewhere the careful path refuses it).
        if ((tag & 3) !== 1 || n > 8) break;
        o = offset;
      }
      if (o < 4 || o > d) break; // the careful path takes or refuses it
      offset = o;
      s += extra + 1;
      const from = d - o;
      // Each move reads only bytes already written (o >= its width), so overlap repeats the pattern.
      if (o >= 8) {
        dv.setFloat64(d, dv.getFloat64(from, true), true);
        dv.setFloat64(d + 8, dv.getFloat64(from + 8, true), true);
        if (n > 16) for (let t = d + 16, f = from + 16, stop = d + n; t < stop; t += 8, f += 8) dv.setFloat64(t, dv.getFloat64(f, true), true);
        d += n;
        continue;
      }
      dv.setUint32(d, dv.getUint32(from, true), true);
      dv.setUint32(d + 4, dv.getUint32(from + 4, true), true);
      dv.setUint32(d + 8, dv.getUint32(from + 8, true), true);
      dv.setUint32(d + 12, dv.getUint32(from + 12, true), true);
      if (n > 16) for (let t = d + 16, f = from + 16, stop = d + n; t < stop; t += 4, f += 4) dv.setUint32(t, dv.getUint32(f, true), true);
      d += n;
    }
    if (s >= end) break;
    const tag = src[s]!;
    switch (tag & 3) {
      case 0: {
        let x = tag >>> 2;
        if (x < 60) {
          s += 1;
        } else {
          const n = x - 59; // 1 to 4 bytes of length
          if (s + 1 + n > end) return `a literal's length runs past the block (at ${s})`;
          x = src[s + 1]!;
          if (n > 1) x |= src[s + 2]! << 8;
          if (n > 2) x |= src[s + 3]! << 16;
          if (n > 3) x |= src[s + 4]! << 24; // int32: a length of 2 GiB or more turns negative, refused below
          s += 1 + n;
        }
        length = x + 1;
        if (length <= 0 || length > dLen - d || length > end - s) return `a literal of ${length >>> 0} bytes runs past the block (at ${s})`;
        if (length <= 8 && d + 8 <= dLen && s + 8 <= srcLen) {
          // Most literals are a few bytes: one or two words, no loop.
          dv.setUint32(d, sv.getUint32(s, true), true);
          if (length > 4) dv.setUint32(d + 4, sv.getUint32(s + 4, true), true);
          d += length;
          s += length;
        } else if (length < ShortCopy && d + length + 3 < dLen && s + length + 3 < srcLen) {
          for (let t = d, f = s, stop = d + length; t < stop; t += 4, f += 4) dv.setUint32(t, sv.getUint32(f, true), true);
          d += length;
          s += length;
        } else if (length < ShortCopy) {
          for (const stop = s + length; s < stop; ) dst[d++] = src[s++]!;
        } else {
          dst.set(src.subarray(s, s + length), d);
          d += length;
          s += length;
        }
        continue;
      }
      case 1: {
        if (s + 2 > end) return `a copy runs past the block (at ${s})`;
        const newOffset = ((tag & 0xe0) << 3) | src[s + 1]!;
        length = (tag >>> 2) & 7;
        s += 2;
        if (newOffset === 0) {
          // Repeat the last offset; lengths 5-7 say how many bytes extend the length.
          if (length === 5) {
            if (s + 1 > end) return `a repeat runs past the block (at ${s})`;
            length = src[s]! + 4;
            s += 1;
          } else if (length === 6) {
            if (s + 2 > end) return `a repeat runs past the block (at ${s})`;
            length = (src[s]! | (src[s + 1]! << 8)) + (1 << 8);
            s += 2;
          } else if (length === 7) {
            if (s + 3 > end) return `a repeat runs past the block (at ${s})`;
            length = (src[s]! | (src[s + 1]! << 8) | (src[s + 2]! << 16)) + (1 << 16);
            s += 3;
          }
        } else {
          offset = newOffset;
        }
        length += 4;
        break;
      }
      case 2:
        if (s + 3 > end) return `a copy runs past the block (at ${s})`;
        length = 1 + (tag >>> 2);
        offset = sv.getUint16(s + 1, true);
        s += 3;
        break;
      default:
        if (s + 5 > end) return `a copy runs past the block (at ${s})`;
        length = 1 + (tag >>> 2);
        // int32 (numbers kept small integers keep the loop fast): an offset of 2 GiB or more turns
        // negative, refused below like any offset past the start.
        offset = src[s + 1]! | (src[s + 2]! << 8) | (src[s + 3]! << 16) | (src[s + 4]! << 24);
        s += 5;
        break;
    }
    if (offset <= 0 || d < offset || length > dLen - d) {
      return `a copy of ${length} bytes from ${offset >>> 0} back, at output ${d} of ${dLen} (input ${s})`;
    }
    let from = d - offset;
    if (length <= 16 && offset >= 4 && d + 16 <= dLen) {
      // Most copies are 4 to 16 bytes: two or four words, no loop.
      dv.setUint32(d, dv.getUint32(from, true), true);
      dv.setUint32(d + 4, dv.getUint32(from + 4, true), true);
      if (length > 8) {
        dv.setUint32(d + 8, dv.getUint32(from + 8, true), true);
        dv.setUint32(d + 12, dv.getUint32(from + 12, true), true);
      }
      d += length;
    } else if (length < ShortCopy && offset >= 4 && d + length + 7 < dLen) {
      // Each word read lies before the one written (offset >= 4): overlap repeats the pattern.
      const stop = d + length;
      for (let t = d; t < stop; t += 8, from += 8) {
        dv.setUint32(t, dv.getUint32(from, true), true);
        dv.setUint32(t + 4, dv.getUint32(from + 4, true), true);
      }
      d = stop;
    } else if (length < ShortCopy) {
      // Forwards byte by byte: an overlapping copy repeats its pattern, as LZ77 wants.
      for (const stop = d + length; d < stop; ) dst[d++] = dst[from++]!;
    } else if (offset >= length) {
      dst.copyWithin(d, from, from + length);
      d += length;
    } else {
      // Overlapping: [from, d) holds whole periods of the pattern; copying it doubles it.
      while (length > 0) {
        const n = Math.min(length, d - from);
        dst.copyWithin(d, from, from + n);
        d += n;
        length -= n;
      }
    }
  }
  return d === dLen ? null : `the block decodes to ${d} bytes, not the ${dLen} it declares`;
}
