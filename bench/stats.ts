/** Small statistics over samples: median, spread, percentiles. */

export interface Spread {
  n: number;
  median: number;
  min: number;
  max: number;
}

export function spread(values: number[]): Spread {
  if (values.length === 0) return { n: 0, median: NaN, min: NaN, max: NaN };
  const s = [...values].sort((a, b) => a - b);
  return { n: s.length, median: quantile(s, 0.5), min: s[0] as number, max: s[s.length - 1] as number };
}

/** Linear-interpolated quantile of sorted values. */
export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  const a = sorted[lo] as number;
  const b = sorted[hi] as number;
  return a + (b - a) * (pos - lo);
}

export interface Latency {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  errors: number;
}

export function latency(ms: number[], errors = 0): Latency {
  const s = [...ms].sort((a, b) => a - b);
  return {
    n: s.length,
    p50: quantile(s, 0.5),
    p90: quantile(s, 0.9),
    p99: quantile(s, 0.99),
    max: s.length ? (s[s.length - 1] as number) : NaN,
    errors,
  };
}

export const MB = 1024 * 1024;

export function fmt(n: number, digits = 2): string {
  return Number.isFinite(n) ? n.toFixed(digits) : "-";
}
