/**
 * Goal: user statements cannot touch Patina's internal tables, change the schema, control the
 * transaction, attach databases or change state with PRAGMAs, however they are spelled; and
 * ordinary statements (including those whose triggers write internal tables) pass.
 *
 * Method: StatementGuard judges the program SQLite compiles (EXPLAIN), so each case is run
 * through Replica.transaction() and must fail with STATEMENT_NOT_ALLOWED and leave every row
 * and clock unchanged.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ReplicaError } from '../../src/crdt/errors.ts'
import { Replica } from '../../src/crdt/replica.ts'
import { applySchemaSql, actorId, snapshot } from './helpers.ts'

const SCHEMA = 'CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, v TEXT);'

function replica(): Replica {
  const r = Replica.open(':memory:', { actorId: actorId(1) })
  applySchemaSql(r, SCHEMA)
  r.transaction([{ sql: "INSERT INTO t (id, v) VALUES (1, 'a')" }])
  return r
}

const REFUSED: [string, string][] = [
  ['write to a clock table', 'UPDATE "t__patina_clock" SET __cl = 2'],
  ['delete from a clock table, other case', 'DELETE FROM T__PATINA_CLOCK'],
  ['quoted with brackets', 'DELETE FROM [t__patina_vidx]'],
  ['quoted with backticks', 'INSERT INTO `__patina_heads` (site, head) VALUES (5, 5)'],
  ['bookkeeping table', 'UPDATE __patina_heads SET head = 0'],
  ['site table', 'DELETE FROM main.__patina_sites'],
  ['read through a CTE', 'WITH x AS (SELECT * FROM "t__patina_clock") SELECT * FROM x'],
  [
    'write fed by a CTE over an internal table',
    'WITH x AS (SELECT head FROM __patina_heads) UPDATE t SET v = (SELECT head FROM x)',
  ],
  ['subquery', 'UPDATE t SET v = (SELECT count(*) FROM "t__patina_vidx")'],
  ['DDL: create table', 'CREATE TABLE u (id INTEGER NOT NULL PRIMARY KEY)'],
  ['DDL: drop trigger', 'DROP TRIGGER "t__patina_ins"'],
  ['DDL: alter table', 'ALTER TABLE t ADD COLUMN w TEXT'],
  ['DDL: create view', 'CREATE VIEW w AS SELECT * FROM t'],
  ['transaction control: COMMIT', 'COMMIT'],
  ['transaction control: SAVEPOINT', 'SAVEPOINT s'],
  ['ATTACH', "ATTACH ':memory:' AS other"],
  ['PRAGMA assignment', 'PRAGMA journal_mode = DELETE'],
  ['PRAGMA with side effects', 'PRAGMA wal_checkpoint'],
  ['PRAGMA user_version set', 'PRAGMA user_version = 3'],
  ['VACUUM', 'VACUUM'],
]

describe('crdt - statement guard', () => {
  for (const [what, sql] of REFUSED) {
    it(`crdt - refuses ${what}`, () => {
      const r = replica()
      const before = snapshot(r)
      const heads = r.originStates()
      assert.throws(
        () => r.transaction([{ sql: "INSERT INTO t (id, v) VALUES (2, 'b')" }, { sql }]),
        (err: unknown) => err instanceof ReplicaError && err.code === 'STATEMENT_NOT_ALLOWED',
      )
      assert.deepStrictEqual(snapshot(r), before)
      assert.deepStrictEqual(r.originStates(), heads)
      r.close()
    })
  }

  it('crdt - refuses reading an internal table through a view', () => {
    const r = replica()
    // Schema files cannot create views; one made behind Patina's back must not open a door.
    r.db.exec('CREATE VIEW peek AS SELECT * FROM "t__patina_clock"')
    assert.throws(
      () => r.transaction([{ sql: 'UPDATE t SET v = (SELECT count(*) FROM peek)' }]),
      (err: unknown) => err instanceof ReplicaError && err.code === 'STATEMENT_NOT_ALLOWED',
    )
    r.close()
  })

  it('crdt - allows ordinary statements, read-only PRAGMAs and sqlite_schema reads', () => {
    const r = replica()
    const ok = [
      "INSERT INTO t (id, v) VALUES (2, 'b') ON CONFLICT (id) DO UPDATE SET v = excluded.v",
      "UPDATE t SET v = 'c' WHERE id IN (SELECT id FROM t WHERE v = 'a')",
      "WITH x AS (SELECT 3 AS id) INSERT INTO t (id, v) SELECT id, 'x' FROM x",
      'DELETE FROM t WHERE id = 2',
      'PRAGMA table_info(t)',
      'SELECT name FROM sqlite_schema',
    ]
    const result = r.transaction(ok.map((sql) => ({ sql })))
    assert.equal(result.version, 2)
    assert.deepStrictEqual(r.query('SELECT id, v FROM t ORDER BY id'), [
      { id: 1n, v: 'c' },
      { id: 3n, v: 'x' },
    ])
    r.close()
  })
})
