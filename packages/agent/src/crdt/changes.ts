/**
 * Changes as they travel between replicas (the shape of Corrosion's `crsql_changes` rows).
 */
import type { VersionRange } from './version-ranges.ts'
import type { SqlValue } from './values.ts'

/** One cell (or the row sentinel, cid '-1') at its current value, with its clock. */
export interface Change {
  readonly table: string
  /** The primary key packed as in cr-sqlite (see pk-codec.ts). */
  readonly pk: Uint8Array
  /** Column name, or '-1' for the row sentinel (its col_version is the causal length). */
  readonly cid: string
  readonly val: SqlValue
  readonly colVersion: number
  /** The origin's version of the transaction that wrote this cell. */
  readonly dbVersion: number
  /** The origin site (16 bytes). */
  readonly actorId: Uint8Array
  /** Causal length of the row this cell belongs to. */
  readonly cl: number
  /** Position of the write inside its transaction. */
  readonly seq: number
}

/** What a replica still holds of one origin's version: its cells, ordered by seq. */
export interface FullChangeset {
  readonly kind: 'full'
  readonly actorId: Uint8Array
  readonly version: number
  readonly changes: readonly Change[]
  /** Highest seq of the version, when known; the changes cover seqs 0..lastSeq. */
  readonly lastSeq: number
  /**
   * The seqs this changeset covers when it is one chunk of a larger version (every cell the
   * sender holds with a seq in the range is in `changes`). Absent: the whole version.
   */
  readonly seqs?: VersionRange
}

/** Versions that exist but hold no cell any more (all overwritten): nothing to apply. */
export interface EmptyChangeset {
  readonly kind: 'empty'
  readonly actorId: Uint8Array
  readonly versions: VersionRange
}

export type Changeset = FullChangeset | EmptyChangeset
