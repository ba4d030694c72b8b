/**
 * A database changed outside Patina is noticed and refused (src/crdt/integrity.ts):
 * - writes from a plain connection (no Patina functions) to Patina's internal tables fail with
 *   "no such function: write_through_the_patina_agent", like writes to replicated tables;
 * - a dropped, altered or added trigger, or an internal table with other columns, makes the
 *   open refuse with the object's name and how to recover;
 * - a file written by an older Patina (triggers calling patina_capture(), no guard triggers, no
 *   trigger record) opens, is upgraded, and then writes and replicates as usual.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import Database from 'better-sqlite3'
import { IntegrityError, inspect } from '../../src/crdt/integrity.ts'
import { clockTable, isInternalName, q, versionIndexTable } from '../../src/crdt/names.ts'
import { Replica } from '../../src/crdt/replica.ts'
import { applySchemaSql, tempReplicas } from './helpers.ts'

const SCHEMA = 'CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, v TEXT, n INTEGER);'
const NO_SUCH = 'no such function: write_through_the_patina_agent'

/** A plain connection: better-sqlite3 with no Patina function registered. */
function plain(path: string): Database.Database {
  const db = new Database(path)
  db.pragma('busy_timeout = 5000')
  return db
}

/** A replica with table t holding one row, closed; returns its path. */
function seeded(tmp: ReturnType<typeof tempReplicas>, name: string): string {
  const r = tmp.open(name)
  applySchemaSql(r, SCHEMA)
  r.transaction([{ sql: "INSERT INTO t (id, v, n) VALUES (1, 'one', 1)" }])
  const path = r.db.name
  r.close()
  return path
}

/** Runs `change` on a plain connection to the file at `path`. */
function tamper(path: string, change: (db: Database.Database) => void): void {
  const db = plain(path)
  try {
    change(db)
  } finally {
    db.close()
  }
}

function refusal(path: string): IntegrityError {
  try {
    Replica.open(path).close()
  } catch (err) {
    assert.ok(err instanceof IntegrityError, `expected an IntegrityError, got ${String(err)}`)
    assert.match(err.message, /restore the file from a backup/)
    assert.match(err.message, /cannot be trusted to replicate/)
    return err
  }
  assert.fail(`${path} opened although it was changed outside Patina`)
}

/** Turns a current file into what the Patina before the trigger record wrote. */
function makeOldFormat(path: string): void {
  tamper(path, (db) => {
    const triggers = db
      .prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'trigger'")
      .all() as { name: string; sql: string }[]
    db.transaction(() => {
      for (const { name, sql } of triggers) {
        db.exec(`DROP TRIGGER ${q(name)}`)
        if (name.includes('__patina_guard_')) continue
        db.exec(sql.replaceAll('write_through_the_patina_agent()', 'patina_capture()'))
      }
      // A trigger an even older Patina kept, which this one no longer does.
      db.exec(
        `CREATE TRIGGER "t__patina_clock_ins" AFTER INSERT ON "t__patina_clock" ` +
          'WHEN patina_capture() BEGIN SELECT 1; END',
      )
      db.exec('DROP TABLE __patina_triggers')
    })()
  })
}

describe('integrity - writes from outside the agent', () => {
  it('integrity - INSERT, UPDATE and DELETE on every internal table fail with the instructive function name', () => {
    const tmp = tempReplicas()
    try {
      const path = seeded(tmp, 'a')
      const db = plain(path)
      try {
        const tables = db
          .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE '%\\_\\_patina%' ESCAPE '\\'",
          )
          .pluck()
          .all() as string[]
        for (const expected of [
          '__patina_sites',
          '__patina_heads',
          '__patina_gaps',
          '__patina_tables',
          '__patina_triggers',
          '__patina_partials',
          '__patina_buffer',
          clockTable('t'),
          versionIndexTable('t'),
        ]) {
          assert.ok(tables.includes(expected), `${expected} exists`)
        }
        for (const table of tables) {
          const col = (db.prepare(`PRAGMA table_info(${q(table)})`).all() as { name: string }[])[0]
            ?.name as string
          for (const sql of [
            `DELETE FROM ${q(table)}`,
            `UPDATE ${q(table)} SET ${q(col)} = ${q(col)}`,
            `INSERT INTO ${q(table)} DEFAULT VALUES`,
            `INSERT OR REPLACE INTO ${q(table)} SELECT * FROM ${q(table)}`,
          ]) {
            // A version index is guarded against DELETE only (table-ddl.ts: the other guards
            // would slow every local write down).
            if (table === versionIndexTable('t') && !sql.startsWith('DELETE')) continue
            assert.throws(() => db.prepare(sql), { message: NO_SUCH }, sql)
          }
        }
      } finally {
        db.close()
      }
      // Nothing was changed, so the file still opens.
      const r = Replica.open(path)
      assert.deepEqual(r.query('SELECT id, v FROM t'), [{ id: 1n, v: 'one' }])
      r.close()
    } finally {
      tmp.cleanup()
    }
  })

  it('integrity - inside the agent, user statements still cannot name internal tables; Patina still writes them', () => {
    const tmp = tempReplicas()
    try {
      const r = tmp.open('a')
      applySchemaSql(r, SCHEMA)
      assert.throws(() => r.transaction([{ sql: 'DELETE FROM __patina_triggers' }]), {
        code: 'STATEMENT_NOT_ALLOWED',
      })
      // Local writes, merges (to a second replica) and schema changes write internal tables.
      const { version } = r.transaction([{ sql: "INSERT INTO t (id, v) VALUES (1, 'x')" }])
      const b = tmp.open('b')
      applySchemaSql(b, SCHEMA)
      const cs = r.changesFor(r.actorId, version as number)
      assert.ok(cs !== null)
      assert.equal(b.apply([cs])[0]?.status, 'applied')
      applySchemaSql(b, `${SCHEMA} CREATE TABLE u (id TEXT NOT NULL PRIMARY KEY);`)
      assert.deepEqual(b.query('SELECT id, v FROM t'), [{ id: 1n, v: 'x' }])
      const names = b.query('SELECT name FROM __patina_triggers').map((row) => String(row.name))
      assert.ok(names.length > 0)
      for (const name of names) assert.ok(isInternalName(name), `${name} is a reserved name`)
    } finally {
      tmp.cleanup()
    }
  })
})

describe('integrity - a tampered database is refused at open', () => {
  const cases: [string, (db: Database.Database) => void, RegExp][] = [
    [
      'a dropped capture trigger',
      (db) => db.exec('DROP TRIGGER "t__patina_ins"'),
      /trigger "t__patina_ins" on table "t" is missing/,
    ],
    [
      'an altered capture trigger',
      (db) => {
        db.exec('DROP TRIGGER "t__patina_del"')
        db.exec('CREATE TRIGGER "t__patina_del" AFTER DELETE ON "t" BEGIN SELECT 1; END')
      },
      /trigger "t__patina_del" on table "t" was altered outside Patina/,
    ],
    [
      'a dropped guard trigger of a bookkeeping table',
      (db) => db.exec('DROP TRIGGER "__patina_heads__patina_guard_upd"'),
      /trigger "__patina_heads__patina_guard_upd" on table "__patina_heads" is missing/,
    ],
    [
      'a trigger added on a replicated table',
      (db) => db.exec('CREATE TRIGGER mine AFTER INSERT ON t BEGIN SELECT 1; END'),
      /trigger "mine" on table "t" was not created by Patina/,
    ],
    [
      'a column added to a clock table',
      (db) => db.exec('ALTER TABLE "t__patina_clock" ADD COLUMN extra INTEGER'),
      /table "t__patina_clock" does not have the columns Patina expects \(unexpected extra/,
    ],
    [
      'the trigger record emptied (after dropping its guard)',
      (db) => {
        db.exec('DROP TRIGGER "__patina_triggers__patina_guard_del"')
        db.exec('DELETE FROM __patina_triggers')
      },
      /the record of Patina's triggers was deleted outside Patina/,
    ],
  ]
  for (const [what, change, reason] of cases) {
    it(`integrity - ${what}: open refuses and names it`, () => {
      const tmp = tempReplicas()
      try {
        const path = seeded(tmp, 'a')
        tamper(path, change)
        const err = refusal(path)
        assert.match(err.message, reason)
        assert.ok(err.problems.some((p) => reason.test(p)))
        // A refusal changes nothing: the next open refuses the same way.
        assert.match(refusal(path).message, reason)
      } finally {
        tmp.cleanup()
      }
    })
  }
})

describe('integrity - a file written by an older Patina', () => {
  it('integrity - an old-format file opens, is upgraded, writes replicate, and a later open writes nothing', () => {
    const tmp = tempReplicas()
    try {
      const path = seeded(tmp, 'a')
      makeOldFormat(path)
      const r = Replica.open(path)
      try {
        const sqls = r
          .query("SELECT name, sql FROM sqlite_schema WHERE type = 'trigger'")
          .map((row) => `${String(row.name)}: ${String(row.sql)}`)
        assert.ok(!sqls.some((s) => s.includes('patina_capture(')), 'no trigger calls the old name')
        assert.ok(!sqls.some((s) => s.startsWith('t__patina_clock_ins:')), 'old trigger dropped')
        assert.ok(sqls.some((s) => s.startsWith('__patina_heads__patina_guard_del:')))
        const { version } = r.transaction([{ sql: "UPDATE t SET v = 'uno' WHERE id = 1" }])
        assert.equal(version, 2)
        const cs = r.changesFor(r.actorId, 2)
        assert.deepEqual(
          cs?.changes.map((c) => [c.table, c.cid, c.val]),
          [['t', 'v', 'uno']],
        )
        assert.equal(inspect(r.db).install.length, 0)
      } finally {
        r.close()
      }
      tamper(path, (db) => {
        assert.throws(() => db.prepare('DELETE FROM t'), { message: NO_SUCH })
        assert.throws(() => db.prepare('DELETE FROM __patina_heads'), { message: NO_SUCH })
      })
      // Current now: opening again needs no write (it would work on a full disk).
      const again = Replica.open(path)
      assert.equal(inspect(again.db).install.length, 0)
      assert.deepEqual(again.query('SELECT id, v FROM t'), [{ id: 1n, v: 'uno' }])
      again.close()
    } finally {
      tmp.cleanup()
    }
  })

  it('integrity - an old-format file with a dropped capture trigger is refused', () => {
    const tmp = tempReplicas()
    try {
      const path = seeded(tmp, 'a')
      makeOldFormat(path)
      tamper(path, (db) => db.exec('DROP TRIGGER "t__patina_upd"'))
      assert.match(refusal(path).message, /trigger "t__patina_upd" on table "t" is missing/)
    } finally {
      tmp.cleanup()
    }
  })
})
