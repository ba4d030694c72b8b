/**
 * Goal: replicas that write concurrently and exchange changes in any order, with duplicates and
 * drops, converge to identical rows and identical clocks once everything is delivered.
 *
 * Method (the yjs test-connector shape): 3 to 5 in-memory replicas; a fast-check generated
 * sequence of steps, each a local transaction on one replica (inserts, updates, deletes,
 * re-inserts, primary-key changes, concurrent writes to the same cells, typed values), the
 * delivery of a random in-flight changeset (sometimes kept in flight to be delivered again),
 * or the drop of one. Then anti-entropy delivers what each replica lacks, and every snapshot
 * (rows with typed values, clocks keyed by table and key with actor ids) must be equal.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import type { FullChangeset } from '../../src/crdt/changes.ts'
import { Replica, type Statement } from '../../src/crdt/replica.ts'
import type { SqlValue } from '../../src/crdt/values.ts'
import { antiEntropy, assertVersionIndexExact, actorId, snapshot } from './helpers.ts'

const LONG = process.env.PATINA_LONG === '1'
export const NUM_RUNS = LONG ? 10_000 : 1_000

export const SCHEMA = `
CREATE TABLE items (
  id INTEGER NOT NULL PRIMARY KEY,
  name TEXT,
  qty INTEGER NOT NULL DEFAULT 0,
  price REAL,
  extra
);
CREATE TABLE pairs (a TEXT NOT NULL, b INTEGER NOT NULL, v, PRIMARY KEY (a, b)) WITHOUT ROWID;
CREATE TABLE tags (k TEXT NOT NULL PRIMARY KEY);
`

export const valueArb: fc.Arbitrary<SqlValue> = fc.oneof(
  fc.constant(null),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  fc.constantFrom(0n, 1n, 2n, 2n ** 53n + 1n, -(2n ** 63n)),
  fc.constantFrom(1.0, 2.5, -3.25, 1e300, 2 ** 53),
  fc.double({ noNaN: true, noDefaultInfinity: true }).filter((d) => !Object.is(d, -0)),
  fc.constantFrom('a', 'b', '\u{1F600}', '\uFFFF', ''),
  fc.string({ maxLength: 6 }),
  fc.uint8Array({ maxLength: 4 }).map((b) => Buffer.from(b)),
)

const id = fc.bigInt({ min: 1n, max: 5n })
const key = fc.constantFrom('x', 'y', 'z')

export const statementArb: fc.Arbitrary<Statement> = fc.oneof(
  fc.record({ id, name: valueArb, qty: fc.bigInt({ min: 0n, max: 3n }) }).map((r) => ({
    sql: 'INSERT OR REPLACE INTO items (id, name, qty) VALUES (?, ?, ?)',
    params: [r.id, r.name, r.qty],
  })),
  fc.record({ id, name: valueArb }).map((r) => ({
    sql: 'INSERT INTO items (id, name) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name',
    params: [r.id, r.name],
  })),
  fc
    .record({ id, col: fc.constantFrom('name', 'qty', 'price', 'extra'), v: valueArb })
    .map((r) => ({
      sql: `UPDATE items SET ${r.col} = ? WHERE id = ?`,
      params: [r.col === 'qty' && r.v === null ? 0n : r.v, r.id],
    })),
  id.map((i) => ({ sql: 'DELETE FROM items WHERE id = ?', params: [i] })),
  fc.record({ from: id, to: id }).map((r) => ({
    sql: 'UPDATE items SET id = ? WHERE id = ?',
    params: [r.to, r.from],
  })),
  fc.record({ a: key, b: fc.bigInt({ min: 0n, max: 2n }), v: valueArb }).map((r) => ({
    sql: 'INSERT OR REPLACE INTO pairs (a, b, v) VALUES (?, ?, ?)',
    params: [r.a, r.b, r.v],
  })),
  fc.record({ a: key, v: valueArb }).map((r) => ({
    sql: 'UPDATE pairs SET v = ? WHERE a = ?',
    params: [r.v, r.a],
  })),
  key.map((a) => ({ sql: 'DELETE FROM pairs WHERE a = ?', params: [a] })),
  key.map((k) => ({ sql: 'INSERT OR IGNORE INTO tags (k) VALUES (?)', params: [k] })),
  key.map((k) => ({ sql: 'DELETE FROM tags WHERE k = ?', params: [k] })),
)

export type Step =
  | { kind: 'write'; replica: number; statements: Statement[] }
  | { kind: 'deliver'; pick: number; keep: boolean }
  | { kind: 'drop'; pick: number }

export const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('write' as const),
      replica: fc.nat(4),
      statements: fc.array(statementArb, { minLength: 1, maxLength: 3 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('deliver' as const),
      pick: fc.nat(),
      keep: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('drop' as const), pick: fc.nat() }) },
)

export function openMemoryReplicas(n: number, firstSiteByte = 0x10): Replica[] {
  const replicas: Replica[] = []
  for (let i = 0; i < n; i++) {
    const r = Replica.open(':memory:', { actorId: actorId(firstSiteByte + i) })
    r.applySchema([{ path: 'schema.sql', sql: SCHEMA }])
    replicas.push(r)
  }
  return replicas
}

/** Runs the steps; returns the replicas after anti-entropy. */
export function runSteps(replicas: Replica[], steps: readonly Step[]): void {
  const inFlight: { to: number; cs: FullChangeset }[] = []
  for (const step of steps) {
    if (step.kind === 'write') {
      const from = step.replica % replicas.length
      const r = replicas[from] as Replica
      let version: number | null = null
      try {
        version = r.transaction(step.statements).version
      } catch {
        // A statement can fail (e.g. a key change onto an existing key): the transaction
        // rolls back and consumes no version, which is part of what is being tested.
      }
      if (version === null) continue
      const cs = r.changesFor(r.actorId, version)
      assert.ok(cs !== null, 'a replica serves its own new version')
      replicas.forEach((_, to) => {
        if (to !== from) inFlight.push({ to, cs })
      })
    } else if (inFlight.length > 0) {
      const at = step.pick % inFlight.length
      const msg = inFlight[at] as { to: number; cs: FullChangeset }
      if (step.kind === 'drop' || !step.keep) inFlight.splice(at, 1)
      if (step.kind === 'deliver') (replicas[msg.to] as Replica).apply([msg.cs])
    }
  }
  antiEntropy(replicas)
}

describe('crdt - convergence', () => {
  it('crdt - replicas converge to identical rows and clocks under any delivery', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 3, max: 5 }),
        fc.array(stepArb, { minLength: 1, maxLength: 40 }),
        (n, steps) => {
          const replicas = openMemoryReplicas(n)
          try {
            runSteps(replicas, steps)
            const first = snapshot(replicas[0] as Replica)
            for (const r of replicas.slice(1)) assert.deepStrictEqual(snapshot(r), first)
            // Every replica holds every version of every origin, with no gap left.
            for (const r of replicas) {
              for (const o of r.originStates()) assert.deepStrictEqual(o.gaps, [])
              assertVersionIndexExact(r)
            }
          } finally {
            for (const r of replicas) r.close()
          }
        },
      ),
      { numRuns: NUM_RUNS },
    )
  })

  it('crdt - applying changesets in either order gives the same state (commutativity)', () => {
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 1, maxLength: 25 }), (steps) => {
        const sources = openMemoryReplicas(3)
        const [x, y] = openMemoryReplicas(2, 0x80) as [Replica, Replica]
        try {
          const writes = steps.filter((s) => s.kind === 'write')
          runSteps(sources, writes)
          const all: FullChangeset[] = []
          for (const src of sources) {
            for (let v = 1; v <= src.headOf(src.actorId); v++) {
              const cs = src.changesFor(src.actorId, v)
              if (cs !== null) all.push(cs)
            }
          }
          for (const cs of all) x.apply([cs])
          for (const cs of [...all].reverse()) y.apply([cs])
          assert.deepStrictEqual(snapshot(y), snapshot(x))
        } finally {
          for (const r of [...sources, x, y]) r.close()
        }
      }),
      { numRuns: LONG ? 2_000 : 200 },
    )
  })
})
