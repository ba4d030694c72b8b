/**
 * Shared helpers for engine tests: replicas in temporary directories, a canonical snapshot of
 * rows and clocks for convergence checks, and anti-entropy to quiescence.
 */
import { actorIdHex } from '../../src/runtime/actor-id.ts'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Replica } from '../../src/crdt/replica.ts'
import type { FullChangeset } from '../../src/crdt/changes.ts'
import { clockTable, q } from '../../src/crdt/names.ts'

export interface TempReplicas {
  readonly dir: string
  open(name: string, siteByte?: number): Replica
  cleanup(): void
}

/** Site ids with a recognisable first byte, so tie-break order is under the test's control. */
export function actorId(byte: number): Uint8Array {
  const id = new Uint8Array(16)
  id[0] = byte
  id[15] = 1
  return id
}

export function tempReplicas(prefix = 'patina-test-'): TempReplicas {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  const opened: Replica[] = []
  return {
    dir,
    open(name, siteByte) {
      const r = Replica.open(
        join(dir, `${name}.db`),
        siteByte === undefined ? {} : { actorId: actorId(siteByte) },
      )
      opened.push(r)
      return r
    },
    cleanup() {
      for (const r of opened) {
        if (r.db.open) r.close()
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

export function applySchemaSql(r: Replica, sql: string): void {
  r.applySchema([{ path: 'schema.sql', sql }])
}

function canon(v: unknown): unknown {
  if (v instanceof Uint8Array) return `blob:${Buffer.from(v).toString('hex')}`
  if (typeof v === 'bigint') return `int:${v}`
  if (typeof v === 'number') return `real:${Object.is(v, -0) ? '-0' : String(v)}`
  return v
}

/**
 * Everything that must be identical across converged replicas: every row of every replicated
 * table with typed values, and every clock keyed by (table, pk), with site ordinals replaced by
 * actor ids (ordinals are local).
 */
export function snapshot(r: Replica): unknown {
  const sites = new Map<bigint, string>()
  for (const row of r.db.prepare('SELECT ordinal, site_id FROM __patina_sites').raw().all() as [
    bigint,
    Buffer,
  ][]) {
    sites.set(row[0], actorIdHex(row[1]))
  }
  const out: Record<string, unknown> = {}
  for (const name of r.tableNames().sort()) {
    const t = r.table(name)
    if (t === undefined) continue
    const order = t.pk.map((p) => q(p.name)).join(', ')
    const rows = (
      r.db.prepare(`SELECT * FROM ${q(name)} ORDER BY ${order}`).all() as Record<string, unknown>[]
    ).map((row) => Object.fromEntries(Object.entries(row).map(([k, v]) => [k, canon(v)])))
    const clocks = (
      r.db.prepare(`SELECT * FROM ${q(clockTable(name))} ORDER BY ${order}`).all() as Record<
        string,
        unknown
      >[]
    ).map((row) =>
      Object.fromEntries(
        Object.entries(row).map(([k, v]) => {
          const isSite = k === '__cs' || k.startsWith('__s_')
          return [k, isSite && typeof v === 'bigint' ? sites.get(v) : canon(v)]
        }),
      ),
    )
    out[name] = { rows, clocks }
  }
  return out
}

/**
 * Every version `from` holds and `to` lacks, newest first, as changesets ready for
 * `to.apply()`: the two calls the networked sync builds on (`holds` to find needs,
 * `changesFor` to serve them), between replicas of one process.
 */
export function missingChangesets(from: Replica, to: Replica): FullChangeset[] {
  const out: FullChangeset[] = []
  for (const origin of from.originStates()) {
    for (let v = origin.head; v >= 1; v--) {
      if (to.holds(origin.actorId, v)) continue
      const cs = from.changesFor(origin.actorId, v)
      if (cs !== null) out.push(cs)
    }
  }
  return out
}

/** Delivers, until nothing changes, every version one replica holds and another lacks. */
export function antiEntropy(replicas: readonly Replica[]): number {
  let delivered = 0
  for (let round = 0; round < 10; round++) {
    let progress = false
    for (const from of replicas) {
      for (const to of replicas) {
        if (from === to) continue
        const wanted = missingChangesets(from, to)
        if (wanted.length > 0) {
          to.apply(wanted)
          delivered += wanted.length
          progress = true
        }
      }
    }
    if (!progress) return delivered
  }
  throw new Error('anti-entropy did not reach quiescence in 10 rounds')
}

/**
 * Checks that each table's version index holds exactly the stamps its clock rows carry: one
 * entry per (origin, version, key) with the number of cells (and sentinel) stamped with it.
 */
export function assertVersionIndexExact(r: Replica): void {
  for (const name of r.tableNames()) {
    const t = r.table(name)
    if (t === undefined) continue
    const pkCols = t.pk.map((p) => q(p.name))
    const slots = [['__cs', '__cd'], ...t.cols.map((c) => [q(`__s_${c}`), q(`__d_${c}`)])]
    const expected = new Map<string, bigint>()
    const rows = r.db
      .prepare(`SELECT ${[...pkCols, ...slots.flat()].join(', ')} FROM ${q(clockTable(name))}`)
      .raw()
      .all() as unknown[][]
    for (const row of rows) {
      const pk = JSON.stringify(row.slice(0, pkCols.length), (_k, v: unknown) =>
        typeof v === 'bigint' ? `${v}` : v,
      )
      for (let i = 0; i < slots.length; i++) {
        const site = row[pkCols.length + i * 2] as bigint | null
        const dbv = row[pkCols.length + i * 2 + 1] as bigint | null
        if (dbv === null) continue
        const key = `${String(site)}/${String(dbv)}/${pk}`
        expected.set(key, (expected.get(key) ?? 0n) + 1n)
      }
    }
    const actual = new Map<string, bigint>()
    for (const row of r.db
      .prepare(
        `SELECT __site, __dbv, ${pkCols.join(', ')}, __refs FROM ${q(`${name}__patina_vidx`)}`,
      )
      .raw()
      .all() as unknown[][]) {
      const pk = JSON.stringify(row.slice(2, 2 + pkCols.length), (_k, v: unknown) =>
        typeof v === 'bigint' ? `${v}` : v,
      )
      actual.set(`${String(row[0])}/${String(row[1])}/${pk}`, row[2 + pkCols.length] as bigint)
    }
    assert.deepStrictEqual(
      [...actual.entries()].sort(),
      [...expected.entries()].sort(),
      `version index of ${name} matches its clocks`,
    )
  }
}
