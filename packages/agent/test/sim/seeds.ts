/**
 * Seeds for simulation tests. `SIM_SEED=<n>` replays that one seed in every seeded test;
 * `PATINA_LONG=1` runs many more seeds. A failing seed is printed with the command to replay it.
 */
export const LONG = process.env['PATINA_LONG'] === '1'
const ONLY = process.env['SIM_SEED']

/** `count` seeds from `base` (`longCount` with PATINA_LONG=1), or just SIM_SEED when set. */
export function seeds(base: number, count: number, longCount = count * 10): number[] {
  if (ONLY !== undefined && ONLY !== '') return [Number(ONLY)]
  const n = LONG ? longCount : count
  return Array.from({ length: n }, (_, i) => base + i)
}

/** Runs `fn(seed)`; a failure names the seed and how to replay it. */
export async function withSeed<T>(seed: number, fn: (seed: number) => Promise<T>): Promise<T> {
  try {
    return await fn(seed)
  } catch (err) {
    const note = `seed ${seed} failed; replay with SIM_SEED=${seed}`
    process.stderr.write(`${note}\n`)
    if (err instanceof Error) err.message = `${note}: ${err.message}`
    throw err
  }
}

/** The q-quantile (0..1) of `values` (nearest rank). */
export function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[i] ?? Number.NaN
}
