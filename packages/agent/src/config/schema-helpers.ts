/**
 * Zod helpers of the config schema: a TOML table whose keys are written once, in camelCase, and
 * read from the file in snake_case; and the frozen, deeply readonly result.
 */
import { z } from 'zod'

/** `probeIntervalMs` -> `probe_interval_ms`. */
type Snake<S extends string> = S extends `${infer C}${infer Rest}`
  ? `${C extends Lowercase<C> ? C : `_${Lowercase<C>}`}${Snake<Rest>}`
  : ''

function snake(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)
}

/**
 * A strict TOML table whose keys are those of `shape` in snake_case (unknown keys are errors),
 * read into an object with the camelCase keys; absent optional keys stay absent.
 */
export function section<S extends z.ZodRawShape>(shape: S) {
  const snakeShape = Object.fromEntries(
    Object.entries(shape).map(([key, type]) => [snake(key), type]),
  ) as { [K in keyof S & string as Snake<K>]: S[K] }
  return z.strictObject(snakeShape).transform((table) => {
    const values = table as Record<string, unknown>
    const out: Record<string, unknown> = {}
    for (const key of Object.keys(shape)) {
      const value = values[snake(key)]
      if (value !== undefined) out[key] = value
    }
    return out as z.output<z.ZodObject<S>>
  })
}

/** Every type of `shape`, optional. */
export function optional<S extends Record<string, z.ZodType>>(
  shape: S,
): { [K in keyof S]: z.ZodOptional<S[K]> } {
  const entries = Object.entries(shape).map(([key, type]) => [key, type.optional()])
  return Object.fromEntries(entries) as { [K in keyof S]: z.ZodOptional<S[K]> }
}

/** The values in `values` of the keys of `table`, those present only. */
export function pick<V extends object, T extends object>(
  values: V,
  table: T,
): { [K in keyof T & keyof V]?: Exclude<V[K], undefined> } {
  const source = values as Record<string, unknown>
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(table)) {
    if (source[key] !== undefined) out[key] = source[key]
  }
  return out as { [K in keyof T & keyof V]?: Exclude<V[K], undefined> }
}

export type DeepReadonly<T> = T extends readonly (infer E)[]
  ? readonly DeepReadonly<E>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T

export function deepFreeze<T>(value: T): DeepReadonly<T> {
  if (typeof value === 'object' && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v)
    Object.freeze(value)
  }
  return value as DeepReadonly<T>
}
