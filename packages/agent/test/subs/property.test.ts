/**
 * Goal: whatever the writes, a subscription's stream describes exactly the result of running
 * its query: after every batch of local writes, deletes and merges of another replica's
 * changes (the 'remote' commit path), the rows rebuilt from rows + change events equal the
 * query's rows on the replica, for every shape Patina accepts (filters, inner joins with
 * filters on joined tables, LEFT JOINs, self-joins, composite keys, ORDER BY, parameters) and
 * for queries maintained by full re-evaluation (aggregates, GROUP BY, DISTINCT, subqueries,
 * compounds, LIMIT, WHERE on a LEFT JOIN's right side).
 *
 * Method: one agent (API + subscriptions, real reader processes) and a second replica B. For
 * each of the queries below, a subscription followed in process (follow.ts). fast-check
 * generates batches of steps: transactions of random statements on A or on B, delivery of B's
 * new versions to A (replica.apply) and of A's to B. After each batch: flush the matcher, read
 * each stream up to its last change id, compare (as multisets of typed JSON rows) with the
 * query run directly on A, and check that change ids are contiguous and every update/delete
 * names a live rowid (StreamState asserts it). A second run uses tiny caps so that the
 * chunked and overflow paths are exercised too. Small key and value domains make joins, key
 * collisions and delete/re-insert races frequent. The seed is printed on failure by fast-check.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import type { FullChangeset } from '../../src/crdt/changes.ts'
import { Replica, type Statement } from '../../src/crdt/replica.ts'
import type { SqlValue } from '../../src/crdt/values.ts'
import { Follower } from './follow.ts'
import {
  expected,
  openSubsApi,
  SUBS_SCHEMA,
  type HarnessOptions,
  type SubsHarness,
} from './harness.ts'

const NUM_RUNS = process.env.PATINA_LONG === '1' ? 500 : 40

/** [query, params, how Patina must maintain it] */
const QUERIES: readonly (readonly [string, SqlValue[] | undefined, 'incremental' | 'full'])[] = [
  ['SELECT id, v, n FROM t WHERE n % 3 = 1', undefined, 'incremental'],
  ['SELECT id, v FROM t WHERE n > ? ORDER BY v DESC', [2n], 'incremental'],
  ['SELECT * FROM u ORDER BY j', undefined, 'incremental'],
  [
    "SELECT t.id, t.v, u.k, u.j, u.w FROM t JOIN u ON u.t_id = t.id WHERE u.w > 'm'",
    undefined,
    'incremental',
  ],
  ['SELECT t.v, g.name FROM t, g WHERE g.id = t.n AND t.v IS NOT NULL', undefined, 'incremental'],
  ['SELECT a.id, b.id, b.v FROM t AS a JOIN t AS b ON b.n = a.id', undefined, 'incremental'],
  ['SELECT n FROM t', undefined, 'incremental'],
  [
    'SELECT t.id, u.w, g.name FROM t JOIN u ON u.t_id = t.id LEFT JOIN g ON g.id = t.n',
    undefined,
    'incremental',
  ],
  [
    'SELECT t.id, u.k, u.j FROM t LEFT JOIN u ON u.t_id = t.id WHERE t.n > 1',
    undefined,
    'incremental',
  ],
  [
    'SELECT g.id, t.id, u.w FROM g LEFT JOIN t ON t.n = g.id LEFT OUTER JOIN u ON u.t_id = t.id',
    undefined,
    'incremental',
  ],
  ['SELECT n, count(*), group_concat(v) FROM t GROUP BY n', undefined, 'full'],
  ['SELECT id FROM t WHERE id IN (SELECT t_id FROM u)', undefined, 'full'],
  ['SELECT DISTINCT n FROM t', undefined, 'full'],
  ['SELECT n FROM t UNION ALL SELECT j FROM u', undefined, 'full'],
  ['SELECT id, v FROM t ORDER BY id LIMIT 3', undefined, 'full'],
  ['SELECT t.id, u.w FROM t LEFT JOIN u ON u.t_id = t.id WHERE u.w IS NULL', undefined, 'full'],
]

const tid = fc.bigInt({ min: 1n, max: 6n })
const small = fc.bigInt({ min: 0n, max: 4n })
const text = fc.constantFrom('a', 'm', 'z', 'q', null)
const ukey = fc.record({ k: fc.constantFrom('p', 'q'), j: fc.bigInt({ min: 1n, max: 3n }) })

const statementArb: fc.Arbitrary<Statement> = fc.oneof(
  fc.record({ id: tid, v: text, n: fc.option(small) }).map((r) => ({
    sql: 'INSERT OR REPLACE INTO t (id, v, n) VALUES (?, ?, ?)',
    params: [r.id, r.v, r.n],
  })),
  fc.record({ id: tid, v: text }).map((r) => ({
    sql: 'UPDATE t SET v = ? WHERE id = ?',
    params: [r.v, r.id],
  })),
  fc.record({ id: tid, n: small }).map((r) => ({
    sql: 'UPDATE t SET n = ? WHERE id = ?',
    params: [r.n, r.id],
  })),
  tid.map((id) => ({ sql: 'DELETE FROM t WHERE id = ?', params: [id] })),
  fc.record({ key: ukey, t: fc.option(tid), w: text }).map((r) => ({
    sql: 'INSERT OR REPLACE INTO u (k, j, t_id, w) VALUES (?, ?, ?, ?)',
    params: [r.key.k, r.key.j, r.t, r.w],
  })),
  fc.record({ key: ukey, t: fc.option(tid) }).map((r) => ({
    sql: 'UPDATE u SET t_id = ? WHERE k = ? AND j = ?',
    params: [r.t, r.key.k, r.key.j],
  })),
  ukey.map((k) => ({ sql: 'DELETE FROM u WHERE k = ? AND j = ?', params: [k.k, k.j] })),
  fc.record({ id: small, name: text }).map((r) => ({
    sql: 'INSERT OR REPLACE INTO g (id, name) VALUES (?, ?)',
    params: [r.id, r.name],
  })),
  small.map((id) => ({ sql: 'DELETE FROM g WHERE id = ?', params: [id] })),
  fc.constant({ sql: 'DELETE FROM u WHERE t_id IS NULL' }),
)

type Step =
  | { readonly kind: 'tx'; readonly on: 'A' | 'B'; readonly statements: Statement[] }
  | { readonly kind: 'deliver'; readonly to: 'A' | 'B' }
  /** Lets the matcher run while later steps write (evaluations in flight during commits). */
  | { readonly kind: 'pause'; readonly ms: number }

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc
      .record({
        on: fc.constantFrom('A' as const, 'B' as const),
        statements: fc.array(statementArb, { minLength: 1, maxLength: 4 }),
      })
      .map((r): Step => ({ kind: 'tx', ...r })),
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom<Step>({ kind: 'deliver', to: 'A' }, { kind: 'deliver', to: 'B' }),
  },
  {
    weight: 2,
    arbitrary: fc.integer({ min: 0, max: 4 }).map((ms): Step => ({ kind: 'pause', ms })),
  },
)

function propertySuite(
  name: string,
  options: HarnessOptions,
  numRuns: number,
  overflows = false,
): void {
  describe(`subs - property: streams equal re-running the query (${name})`, () => {
    let h: SubsHarness
    let b: Replica
    let bDir: string
    const followers: { sql: string; params: SqlValue[] | undefined; f: Follower }[] = []
    /** Versions of each replica already delivered to the other. */
    const delivered = { A: 0, B: 0 }

    before(async () => {
      h = await openSubsApi(options)
      bDir = mkdtempSync(join(tmpdir(), 'patina-subs-b-'))
      b = Replica.open(join(bDir, 'b.db'))
      b.applySchema([{ path: 'schema.sql', sql: SUBS_SCHEMA }])
      for (const [sql, params, mode] of QUERIES) {
        const f = await Follower.subscribe(h.subs, params === undefined ? { sql } : { sql, params })
        const info = h.subs.list().find((s) => s.id === f.stream.id)
        assert.equal(info?.mode, mode, `${sql} is maintained as ${mode}`)
        followers.push({ sql, params, f })
      }
    })

    after(async () => {
      for (const { f } of followers) await f.close()
      b.close()
      rmSync(bDir, { recursive: true, force: true })
      await h.close()
    })

    const deliver = (from: Replica, to: Replica, key: 'A' | 'B'): void => {
      const head = from.headOf(from.actorId)
      const changesets: FullChangeset[] = []
      for (let v = delivered[key] + 1; v <= head; v++) {
        const cs = from.changesFor(from.actorId, v)
        if (cs !== null) changesets.push(cs)
      }
      delivered[key] = head
      if (changesets.length > 0) to.apply(changesets)
    }

    const check = async (): Promise<void> => {
      await h.subs.flush()
      for (const { sql, params, f } of followers) {
        await f.catchUp(h.subs)
        assert.deepEqual(f.state.sorted(), expected(h, sql, params), `stream of: ${sql}`)
      }
    }

    it('subs - random local writes, deletes and merges keep every stream exact', async () => {
      await check()
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.array(stepArb, { minLength: 1, maxLength: 5 }), {
            minLength: 1,
            maxLength: 4,
          }),
          async (batches) => {
            for (const batch of batches) {
              for (const step of batch) {
                if (step.kind === 'pause') {
                  await new Promise((resolve) => setTimeout(resolve, step.ms))
                  continue
                }
                if (step.kind === 'deliver') {
                  if (step.to === 'A') deliver(b, h.replica, 'B')
                  else deliver(h.replica, b, 'A')
                  continue
                }
                const replica = step.on === 'A' ? h.replica : b
                try {
                  replica.transaction(step.statements)
                } catch {
                  // A constraint failure rolls the whole transaction back: nothing to match.
                }
              }
              await check()
            }
          },
        ),
        { numRuns },
      )
      assert.equal(h.replica.listenerErrors, 0)
      if (overflows) {
        const text = await h.metrics.registry.metrics()
        assert.match(
          text,
          /^patina_subs_pending_overflows_total\{scope="(queue|subscription)"\} [1-9]/m,
        )
      }
    })
  })
}

propertySuite('defaults, two evaluation readers', { subs: { reader_threads: 2 } }, NUM_RUNS)
// Tiny caps force the other paths: restricted evaluations split into many units (keys, then
// LEFT JOIN prefixes in chunks) and queue overflows that fall back to full re-evaluation.
propertySuite(
  'tiny caps: 2 keys per evaluation, 4 queued keys',
  { subs: { max_pending_keys: 4 }, evalKeysMax: 2 },
  Math.ceil(NUM_RUNS / 2),
  true,
)
