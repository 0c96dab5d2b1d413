/** A point the code under test waits at until the test opens it: races made to happen, never slept into. */

/** Every gate made in this process, for `openAllGates`. */
const made: Gate[] = [];

/** Opens every gate: for a file's `after`, so that a test that failed while holding one cannot hang the service's stop. */
export function openAllGates(): void {
  for (const gate of made) gate.open();
}

/** A promise the test opens: `entered` resolves when the code under test reached it. */
export class Gate {
  constructor() {
    made.push(this);
  }
  #open!: () => void;
  #entered!: () => void;
  readonly opened = new Promise<void>((resolve) => (this.#open = resolve));
  readonly entered = new Promise<void>((resolve) => (this.#entered = resolve));
  async pass(): Promise<void> {
    this.#entered();
    await this.opened;
  }
  open(): void {
    this.#open();
  }
}

/** Makes `obj[method]` wait at `gate` once, before it runs. */
export function gateOnce<T extends object, K extends keyof T>(obj: T, method: K, gate: Gate): void {
  const original = obj[method] as (...args: unknown[]) => Promise<unknown>;
  let used = false;
  obj[method] = (async (...args: unknown[]) => {
    if (!used) {
      used = true;
      await gate.pass();
    }
    return original.apply(obj, args);
  }) as T[K];
}
