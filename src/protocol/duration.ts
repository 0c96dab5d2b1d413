/**
 * Durations as the nats CLI writes them (its `--max-age`, parsed by fisk's ParseDuration): one or
 * more `<number><unit>` parts, such as `30d`, `12h`, `1h30m`, `1.5w`, with the units of Go's
 * durations (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`) and `d`/`D` (24 h), `w`/`W` (7 d), `M` (30 d)
 * and `y`/`Y` (365 d); `0` alone is zero. Stricter than fisk: no sign, no spaces, nothing between
 * the parts. A JSON number is a count of seconds.
 */

const UnitMs: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  D: 86_400_000,
  w: 7 * 86_400_000,
  W: 7 * 86_400_000,
  M: 30 * 86_400_000,
  y: 365 * 86_400_000,
  Y: 365 * 86_400_000,
};

/** Longer unit names first, so that `ms` is not read as `m` followed by garbage. */
const Unit = "(?:ns|us|µs|ms|s|m|h|d|D|w|W|M|y|Y)";
const Part = `\\d+(?:\\.\\d+)?${Unit}`;

/** The whole text of a duration; also the JSON Schema `pattern` of such fields. */
export const DurationPattern = new RegExp(`^(?:0|(?:${Part})+)$`);

/** A duration (as DurationPattern accepts it, or seconds) in milliseconds; throws on any other text. */
export function durationMs(value: string | number): number {
  if (typeof value === "number") {
    if (!Number.isFinite(value) || value < 0) throw new RangeError(`a duration in seconds is a number of 0 or more, not ${value}`);
    return value * 1_000;
  }
  if (!DurationPattern.test(value)) {
    throw new RangeError(`invalid duration ${JSON.stringify(value)}: write it as the nats CLI does, e.g. 30d, 12h, 1h30m, 1w, 1y (or 0)`);
  }
  let ms = 0;
  for (const [, amount, unit] of value.matchAll(new RegExp(`(\\d+(?:\\.\\d+)?)(${Unit})`, "g"))) {
    ms += Number(amount) * (UnitMs[unit as string] as number);
  }
  return ms;
}
