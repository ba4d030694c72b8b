/**
 * Typed SQLite values as Patina carries them end to end.
 *
 * The JavaScript type is the SQLite storage class: `bigint` is INTEGER (all 64 bits), `number`
 * is REAL (so 1.0 stays a REAL), `string` is TEXT, `Uint8Array` is BLOB and `null` is NULL.
 * better-sqlite3 binds a JS number as REAL and a bigint as INTEGER, and reads INTEGER as bigint
 * when `safeIntegers` is on, so this mapping survives a round trip through SQLite untouched.
 */
export type SqlValue = null | bigint | number | string | Uint8Array

/** SQLite's type codes, as cr-sqlite uses them in merge order and in packed keys. */
export const TYPE_INTEGER = 1
export const TYPE_REAL = 2
export const TYPE_TEXT = 3
export const TYPE_BLOB = 4
export const TYPE_NULL = 5

export function typeCode(value: SqlValue): number {
  if (value === null) return TYPE_NULL
  if (typeof value === 'bigint') return TYPE_INTEGER
  if (typeof value === 'number') return TYPE_REAL
  if (typeof value === 'string') return TYPE_TEXT
  return TYPE_BLOB
}

const textEncoder = new TextEncoder()

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number)
    if (d !== 0) return d < 0 ? -1 : 1
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1
}

/**
 * Orders two values the way the merge breaks ties (cr-sqlite's `crsql_compare_sqlite_values`):
 * different storage classes order INTEGER > REAL > TEXT > BLOB > NULL; within a class, numbers
 * compare numerically, TEXT compares as UTF-8 bytes (not UTF-16 code units, which order
 * differently above U+FFFF), BLOBs compare bytewise. Returns -1, 0 or 1.
 */
export function compareValues(a: SqlValue, b: SqlValue): number {
  const ta = typeCode(a)
  const tb = typeCode(b)
  if (ta !== tb) return ta < tb ? 1 : -1
  if (a === null || b === null) return 0
  if (typeof a === 'bigint' || typeof a === 'number') {
    const bb = b as bigint | number
    return a < bb ? -1 : a > bb ? 1 : 0
  }
  if (typeof a === 'string') {
    return compareBytes(textEncoder.encode(a), textEncoder.encode(b as string))
  }
  return compareBytes(a, b as Uint8Array)
}

export { compareBytes }

/** True when both values have the same storage class and compare equal. */
export function sameValue(a: SqlValue, b: SqlValue): boolean {
  return compareValues(a, b) === 0
}
