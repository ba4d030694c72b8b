/**
 * The size of a row as the API sends it: the UTF-8 bytes of its values as JSON (`encodeCells`:
 * `[v1,v2,...]`, TEXT as a JSON string, BLOB as an array of bytes), measured without encoding
 * it. The reader processes check it against `[api] max_row_bytes` before a row crosses to the
 * agent, so a refused row is never copied, encoded or buffered there.
 *
 * `rowBytesBound` is cheap (lengths only) and never below the exact size; `rowJsonBytes` is
 * exact and reads every character of a text and every byte of a blob, so it runs only when the
 * bound is over the limit.
 */
import { formatReal } from '@patina/protocol'
import type { SqlValue } from '../crdt/values.ts'

/** A UTF-16 unit is at most 6 bytes of JSON (`\u001f`, a lone surrogate `\udc00`). */
const TEXT_BYTES_PER_UNIT_MAX = 6
/** A byte of a blob is at most 4 bytes of JSON (`255,`). */
const BLOB_BYTES_PER_BYTE_MAX = 4
/** `-9223372036854775808` */
const INTEGER_BYTES_MAX = 20
/** `-1.7976931348623157e+308` */
const REAL_BYTES_MAX = 24

/**
 * What JSON.stringify escapes (control characters, `"`, `\\`) and surrogates: a text without
 * them is its UTF-8 bytes and two quotes.
 */
// eslint-disable-next-line no-control-regex
const NEEDS_SCAN = /[\u0000-\u001f"\\\ud800-\udfff]/

/** Exact UTF-8 bytes of `JSON.stringify(s)`. */
export function textJsonBytes(s: string): number {
  if (!NEEDS_SCAN.test(s)) return Buffer.byteLength(s, 'utf8') + 2
  let n = 2
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === 0x22 || c === 0x5c) n += 2
    else if (c < 0x20)
      n += c === 0x08 || c === 0x09 || c === 0x0a || c === 0x0c || c === 0x0d ? 2 : 6
    else if (c < 0x80) n += 1
    else if (c < 0x800) n += 2
    else if (c >= 0xd800 && c <= 0xdbff) {
      const d = i + 1 < s.length ? s.charCodeAt(i + 1) : 0
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4
        i++
      } else {
        n += 6
      }
    } else if (c >= 0xdc00 && c <= 0xdfff) n += 6
    else n += 3
  }
  return n
}

/** Exact bytes of a blob as a JSON array of bytes: `[0,17,255]`. */
export function blobJsonBytes(b: Uint8Array): number {
  let n = b.length === 0 ? 2 : b.length + 1
  for (const byte of b) n += byte < 10 ? 1 : byte < 100 ? 2 : 3
  return n
}

/** Exact bytes of one value as the API encodes it. */
export function valueJsonBytes(v: SqlValue): number {
  if (v === null) return 4
  if (typeof v === 'bigint') return v.toString().length
  if (typeof v === 'number') return formatReal(v).length
  if (typeof v === 'string') return textJsonBytes(v)
  return blobJsonBytes(v)
}

/** Exact bytes of a row's values as a JSON array. */
export function rowJsonBytes(row: readonly SqlValue[]): number {
  let n = row.length === 0 ? 2 : row.length + 1
  for (const v of row) n += valueJsonBytes(v)
  return n
}

/** An upper bound of `rowJsonBytes(row)` from lengths alone. */
export function rowBytesBound(row: readonly SqlValue[]): number {
  let n = row.length === 0 ? 2 : row.length + 1
  for (const v of row) {
    if (v === null) n += 4
    else if (typeof v === 'bigint') n += INTEGER_BYTES_MAX
    else if (typeof v === 'number') n += REAL_BYTES_MAX
    else if (typeof v === 'string') n += v.length * TEXT_BYTES_PER_UNIT_MAX + 2
    else n += v.length * BLOB_BYTES_PER_BYTE_MAX + 2
  }
  return n
}

/**
 * A rough size of the row for cutting batches (texts by length, blobs ×4): cheap, not a bound.
 */
export function rowBytesHint(row: readonly SqlValue[]): number {
  let n = row.length + 1
  for (const v of row) {
    if (typeof v === 'string') n += v.length + 2
    else if (v instanceof Uint8Array) n += v.length * BLOB_BYTES_PER_BYTE_MAX
    else n += 8
  }
  return n
}

/**
 * The row's exact size when it is over `limit`, else null (within it). The exact size is only
 * computed when the cheap bound is over the limit.
 */
export function rowOverLimit(row: readonly SqlValue[], limit: number): number | null {
  if (rowBytesBound(row) <= limit) return null
  const exact = rowJsonBytes(row)
  return exact > limit ? exact : null
}

/** `400000002` as `400,000,002`. */
export function formatBytes(n: number): string {
  return n.toLocaleString('en-US')
}

/** The reason a row is refused (the text of ROW_TOO_LARGE). */
export function rowTooLargeMessage(rowNumber: number, bytes: number, limit: number): string {
  return (
    `row ${formatBytes(rowNumber)} of the result is ${formatBytes(bytes)} bytes as JSON, ` +
    `over [api] max_row_bytes (${formatBytes(limit)})`
  )
}
