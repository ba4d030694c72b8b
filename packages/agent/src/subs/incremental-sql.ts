/**
 * The statements an incremental subscription runs, built from the slices of the user's SELECT
 * (select-shape.ts). Every one appends the key columns of each FROM item to the user's result
 * columns (after them, so that `ORDER BY 2` still means the user's second column), and binds
 * the changed keys as named parameters `:__kN` (the user's own are `:__pN`, params.ts).
 *
 * - full: the query as written (ORDER BY kept), for the first result and for re-runs.
 * - restricted: one branch per FROM item whose table changed, `item.key IN (changed keys)`,
 *   plus one branch for key prefixes (below), combined with UNION ALL so that all branches
 *   read one snapshot. A result row involves a changed source row exactly when one of its
 *   items' keys is a changed key, so the branches return every row that may have changed.
 * - probe: for a change in a table on the right of a LEFT JOIN, the prefixes (keys of the
 *   items left of the first LEFT JOIN) that the changed rows join to now. With the prefixes
 *   stored rows had, these are the left-hand rows whose whole set of result rows must be
 *   recomputed ("no match" rows included), which the prefix branch does.
 */
import { q } from '../crdt/names.ts'
import type { SqlValue } from '../crdt/values.ts'

export interface QueryParts {
  readonly columnsText: string
  readonly fromText: string
  readonly whereText: string | null
  readonly orderText: string | null
}

export interface KeyedItem {
  readonly alias: string
  readonly pk: readonly string[]
  readonly nullable: boolean
}

export interface BuiltQuery {
  readonly sql: string
  readonly params: Record<string, SqlValue>
}

function keyColumns(item: KeyedItem): string[] {
  return item.pk.map((c) => `${q(item.alias)}.${q(c)}`)
}

export function identityColumns(items: readonly KeyedItem[]): string[] {
  return items.flatMap(keyColumns)
}

function prefixColumns(items: readonly KeyedItem[]): string[] {
  return items.filter((it) => !it.nullable).flatMap(keyColumns)
}

function where(parts: QueryParts, restriction: string | null): string {
  if (parts.whereText === null) return restriction === null ? '' : ` WHERE ${restriction}`
  return restriction === null
    ? ` WHERE ${parts.whereText}`
    : ` WHERE (${parts.whereText}) AND ${restriction}`
}

export function fullQuery(parts: QueryParts, items: readonly KeyedItem[]): string {
  const order = parts.orderText === null ? '' : ` ORDER BY ${parts.orderText}`
  return (
    `SELECT ${parts.columnsText}, ${identityColumns(items).join(', ')} ` +
    `FROM ${parts.fromText}${where(parts, null)}${order}`
  )
}

/** `cols IN (...)` over `tuples`, binding each value as a fresh `:__kN` parameter. */
class KeyBinder {
  readonly params: Record<string, SqlValue> = {}
  private next = 0

  inList(columns: readonly string[], tuples: readonly (readonly SqlValue[])[]): string {
    const names = tuples.map((tuple) =>
      tuple.map((v) => {
        const name = `__k${this.next++}`
        this.params[name] = v
        return `:${name}`
      }),
    )
    if (columns.length === 1) return `${columns[0] ?? ''} IN (${names.map((n) => n[0]).join(', ')})`
    return `(${columns.join(', ')}) IN (VALUES ${names.map((n) => `(${n.join(', ')})`).join(', ')})`
  }
}

export interface Restriction {
  /** Changed keys (as value tuples) per FROM item index; items not listed are unrestricted. */
  readonly keysByItem: ReadonlyMap<number, readonly (readonly SqlValue[])[]>
  /** Key prefixes (values of every non-nullable item's key columns) to recompute whole. */
  readonly prefixes: readonly (readonly SqlValue[])[]
}

export function restrictedQuery(
  parts: QueryParts,
  items: readonly KeyedItem[],
  restriction: Restriction,
): BuiltQuery {
  const binder = new KeyBinder()
  const head = `SELECT ${parts.columnsText}, ${identityColumns(items).join(', ')} FROM ${parts.fromText}`
  const branches: string[] = []
  for (const [index, keys] of restriction.keysByItem) {
    const item = items[index]
    if (item === undefined || keys.length === 0) continue
    branches.push(`${head}${where(parts, binder.inList(keyColumns(item), keys))}`)
  }
  if (restriction.prefixes.length > 0) {
    branches.push(
      `${head}${where(parts, binder.inList(prefixColumns(items), restriction.prefixes))}`,
    )
  }
  return { sql: branches.join(' UNION ALL '), params: binder.params }
}

/** The key prefixes the given keys of a NULL-extended item join to now. */
export function probeQuery(
  parts: QueryParts,
  items: readonly KeyedItem[],
  index: number,
  keys: readonly (readonly SqlValue[])[],
): BuiltQuery {
  const binder = new KeyBinder()
  const item = items[index]
  if (item === undefined) throw new RangeError(`no FROM item ${index}`)
  const restriction = binder.inList(keyColumns(item), keys)
  return {
    sql: `SELECT ${prefixColumns(items).join(', ')} FROM ${parts.fromText}${where(parts, restriction)}`,
    params: binder.params,
  }
}

/** Checks that WHERE reads only the items left of the first LEFT JOIN (see analyze.ts). */
export function preservedWhereQuery(preservedFromText: string, whereText: string): string {
  return `SELECT 1 FROM ${preservedFromText} WHERE ${whereText}`
}
