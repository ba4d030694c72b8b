/**
 * Primary keys packed into one blob, byte-compatible with cr-sqlite's `crsql_pack_columns`
 * (and so with Corrosion's `pk` field):
 *
 *   [column count: u8] then per column a type byte `(nbytes << 3) | type`, followed by
 *   - INTEGER: `nbytes` (0..8) big-endian bytes, minimal; 0 takes 0 bytes, negatives take 8.
 *     Decoded as unsigned when nbytes < 8 (as Corrosion does), as signed 64-bit when 8.
 *   - REAL: 8 bytes of big-endian IEEE 754 (nbytes is 0).
 *   - TEXT / BLOB: an `nbytes`-byte big-endian length, then the bytes (TEXT as UTF-8).
 *   - NULL: nothing.
 */
import assert from 'node:assert/strict'
import {
  TYPE_BLOB,
  TYPE_INTEGER,
  TYPE_NULL,
  TYPE_REAL,
  TYPE_TEXT,
  typeCode,
  type SqlValue,
} from './values.ts'

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

export class PkCodecError extends Error {
  override readonly name = 'PkCodecError'
  readonly code = 'PK_DECODE'
}

function unsignedBytes(n: bigint): number[] {
  const out: number[] = []
  while (n > 0n) {
    out.unshift(Number(n & 0xffn))
    n >>= 8n
  }
  return out
}

function intBytes(v: bigint): number[] {
  if (v >= 0n) return unsignedBytes(v)
  const twos = BigInt.asUintN(64, v)
  const bytes = unsignedBytes(twos)
  while (bytes.length < 8) bytes.unshift(0)
  return bytes
}

export function packPk(values: readonly SqlValue[]): Uint8Array {
  assert.ok(values.length > 0 && values.length < 256, 'a primary key has 1 to 255 columns')
  const out: number[] = [values.length]
  for (const value of values) {
    const type = typeCode(value)
    if (value === null) {
      out.push(TYPE_NULL)
    } else if (typeof value === 'bigint') {
      const bytes = intBytes(value)
      out.push((bytes.length << 3) | type, ...bytes)
    } else if (typeof value === 'number') {
      const buf = Buffer.alloc(8)
      buf.writeDoubleBE(value)
      out.push(TYPE_REAL, ...buf)
    } else {
      const bytes = typeof value === 'string' ? encoder.encode(value) : value
      const len = unsignedBytes(BigInt(bytes.length))
      out.push((len.length << 3) | type, ...len)
      for (const b of bytes) out.push(b)
    }
  }
  return Uint8Array.from(out)
}

export function unpackPk(blob: Uint8Array): SqlValue[] {
  const view = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength)
  if (view.length === 0) throw new PkCodecError('empty primary-key blob')
  const count = view[0] as number
  const values: SqlValue[] = []
  let at = 1
  const need = (n: number): void => {
    if (at + n > view.length) throw new PkCodecError('primary-key blob is truncated')
  }
  for (let i = 0; i < count; i++) {
    need(1)
    const tag = view[at++] as number
    const type = tag & 7
    const nbytes = tag >> 3
    if (type === TYPE_INTEGER) {
      if (nbytes > 8) throw new PkCodecError(`integer of ${nbytes} bytes in primary-key blob`)
      need(nbytes)
      let v = 0n
      for (let j = 0; j < nbytes; j++) v = (v << 8n) | BigInt(view[at + j] as number)
      at += nbytes
      values.push(nbytes === 8 ? BigInt.asIntN(64, v) : v)
    } else if (type === TYPE_REAL) {
      need(8)
      values.push(view.readDoubleBE(at))
      at += 8
    } else if (type === TYPE_TEXT || type === TYPE_BLOB) {
      if (nbytes > 4) throw new PkCodecError('length prefix too long in primary-key blob')
      need(nbytes)
      let len = 0
      for (let j = 0; j < nbytes; j++) len = len * 256 + (view[at + j] as number)
      at += nbytes
      need(len)
      const bytes = view.subarray(at, at + len)
      at += len
      if (type === TYPE_TEXT) {
        try {
          values.push(decoder.decode(bytes))
        } catch (cause) {
          throw new PkCodecError('text in primary-key blob is not valid UTF-8', { cause })
        }
      } else {
        values.push(Buffer.from(bytes))
      }
    } else if (type === TYPE_NULL) {
      values.push(null)
    } else {
      throw new PkCodecError(`unknown type ${type} in primary-key blob`)
    }
  }
  if (at !== view.length) throw new PkCodecError('trailing bytes after primary-key blob')
  return values
}
