/**
 * How a result row of an incremental subscription is named: by the primary keys of the source
 * rows it comes from, one segment per FROM item, each packed as cr-sqlite packs keys
 * (pk-codec.ts). A segment of a NULL-extended item (nothing matched its LEFT JOIN) is a single
 * 0 byte, which no packed key starts with (a key has at least one column). The segments are
 * self-delimiting, so their concatenation is an exact, comparable identity.
 */
import assert from 'node:assert/strict'
import { packPk, PkCodecError } from '../crdt/pk-codec.ts'
import { TYPE_BLOB, TYPE_INTEGER, TYPE_NULL, TYPE_REAL, TYPE_TEXT } from '../crdt/values.ts'
import type { SqlValue } from '../crdt/values.ts'

export interface IdentityItem {
  /** Primary-key columns of the item's table. */
  readonly pkColumns: number
  readonly nullable: boolean
}

export interface RowIdentity {
  readonly ident: Buffer
  /** The packed key of each item, or null for a NULL-extended one. */
  readonly keys: readonly (Buffer | null)[]
  /** The keys of the items left of the first LEFT JOIN (only for queries that have one). */
  readonly prefix: Buffer | null
}

const ABSENT = Buffer.from([0])

/**
 * Names a result row from its key values (the items' key columns, in item order). Throws when
 * a key of an item that cannot be NULL-extended is NULL: the shape analysis was wrong, and the
 * matcher fails the subscription rather than guess.
 */
export function rowIdentity(
  items: readonly IdentityItem[],
  values: readonly SqlValue[],
  hasLeftJoin: boolean,
): RowIdentity {
  const keys: (Buffer | null)[] = []
  const parts: Buffer[] = []
  let at = 0
  for (const item of items) {
    const slice = values.slice(at, at + item.pkColumns)
    at += item.pkColumns
    if (slice.every((v) => v === null)) {
      if (!item.nullable) throw new Error('a result row has no key for a table it must come from')
      keys.push(null)
      parts.push(ABSENT)
      continue
    }
    const key = Buffer.from(packPk(slice))
    keys.push(key)
    parts.push(key)
  }
  assert.equal(at, values.length, 'one value per key column')
  let prefix: Buffer | null = null
  if (hasLeftJoin) {
    const preserved = items.findIndex((it) => it.nullable)
    prefix = Buffer.concat(parts.slice(0, preserved < 0 ? parts.length : preserved))
  }
  return { ident: Buffer.concat(parts), keys, prefix }
}

/** Splits an identity back into its items' packed keys (null for NULL-extended ones). */
export function identityKeys(ident: Uint8Array, itemCount: number): (Buffer | null)[] {
  const buf = Buffer.from(ident.buffer, ident.byteOffset, ident.byteLength)
  const keys: (Buffer | null)[] = []
  let at = 0
  for (let n = 0; n < itemCount; n++) {
    const start = at
    const columns = buf[at++]
    if (columns === undefined) throw new PkCodecError('identity is truncated')
    if (columns === 0) {
      keys.push(null)
      continue
    }
    for (let c = 0; c < columns; c++) {
      const tag = buf[at++]
      if (tag === undefined) throw new PkCodecError('identity is truncated')
      const type = tag & 7
      const nbytes = tag >> 3
      if (type === TYPE_INTEGER) at += nbytes
      else if (type === TYPE_REAL) at += 8
      else if (type === TYPE_TEXT || type === TYPE_BLOB) {
        let len = 0
        for (let j = 0; j < nbytes; j++) len = len * 256 + (buf[at + j] ?? 0)
        at += nbytes + len
      } else if (type !== TYPE_NULL) throw new PkCodecError(`unknown type ${type} in identity`)
    }
    if (at > buf.length) throw new PkCodecError('identity is truncated')
    keys.push(Buffer.from(buf.subarray(start, at)))
  }
  if (at !== buf.length) throw new PkCodecError('trailing bytes after identity')
  return keys
}
