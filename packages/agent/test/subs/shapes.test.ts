/**
 * Goal: the planner accepts exactly the shapes it can maintain, says how (incremental or full
 * re-evaluation), and refuses the rest at subscribe time with a message that says why.
 *
 * Method: a Planner on a temporary replica with the test schema; each statement is planned
 * and its mode, or its error code and message, compared with what docs/api.md promises.
 * Planning needs no reader process: it compiles statements on a read-only connection.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Params } from '../../src/crdt/replica.ts'
import { Replica } from '../../src/crdt/replica.ts'
import { SubsError } from '../../src/subs/errors.ts'
import { bindStatement } from '../../src/subs/params.ts'
import { Planner, type Plan } from '../../src/subs/planner.ts'
import { SUBS_SCHEMA } from './harness.ts'

let dir = ''
let replica: Replica
let planner: Planner
let strict: Planner

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'patina-shapes-'))
  replica = Replica.open(join(dir, 'state.db'))
  replica.applySchema([{ path: 'schema.sql', sql: SUBS_SCHEMA }])
  const path = join(dir, 'state.db')
  planner = new Planner({ path, catalog: replica, fullReevaluation: true })
  strict = new Planner({ path, catalog: replica, fullReevaluation: false })
})

after(() => {
  planner.close()
  strict.close()
  replica.close()
  rmSync(dir, { recursive: true, force: true })
})

function plan(sql: string, params?: Params, p: Planner = planner): Plan {
  return p.plan(bindStatement(sql, params))
}

function refused(sql: string, code: string, message: RegExp, params?: Params, p = planner): void {
  assert.throws(
    () => plan(sql, params, p),
    (err: unknown) => {
      assert.ok(err instanceof SubsError, `${sql}: ${String(err)}`)
      assert.equal(err.code, code, `${sql}: ${err.message}`)
      assert.match(err.message, message, sql)
      return true
    },
  )
}

describe('subs - query shapes', () => {
  it('subs - incremental shapes: filters, joins, LEFT JOINs, aliases, ORDER BY, parameters', () => {
    for (const sql of [
      'SELECT * FROM t',
      'SELECT id, v FROM t WHERE n > 3 ORDER BY v DESC, 1',
      'select ALL t.* from main.t as x, t where x.id = t.n',
      'SELECT "t"."id", u.w FROM "t" JOIN u ON u.t_id = t.id WHERE u.w IS NOT DISTINCT FROM t.v',
      'SELECT a.id, b.id FROM t a INNER JOIN t b ON b.n = a.id CROSS JOIN g',
      'SELECT t.id, u.w, g.name FROM t JOIN u ON u.t_id = t.id LEFT JOIN g ON g.id = u.j',
      'SELECT g.id, t.id FROM g LEFT OUTER JOIN t USING (id) LEFT JOIN u ON u.t_id = t.id WHERE g.name > 1',
      'SELECT id FROM g NATURAL JOIN t',
      'SELECT id, length(v) * 2, upper(v) AS up, CASE WHEN n > 1 THEN 1 END FROM t WHERE v LIKE ? ',
      'SELECT * FROM t INDEXED BY sqlite_autoindex_t_1',
      "SELECT strftime('%Y', v) FROM t",
    ]) {
      let p: Plan
      try {
        p = plan(sql, sql.includes('?') ? ['a%'] : undefined)
      } catch (err) {
        // INDEXED BY an index that does not exist is SQLite's own refusal; fine either way.
        assert.ok(sql.includes('INDEXED BY'), `${sql}: ${String(err)}`)
        continue
      }
      assert.equal(p.mode, 'incremental', `${sql}: ${p.mode === 'full' ? p.reason : ''}`)
    }
  })

  it('subs - other read-only shapes are maintained by full re-evaluation, with the reason', () => {
    for (const [sql, reason] of [
      ['SELECT count(*) FROM t', /aggregate/],
      ['SELECT max(id) FROM t', /aggregate/],
      ['SELECT id, max(n, 3), min(id) FROM t', /aggregate/],
      ['SELECT n, max(v) FROM t GROUP BY n', /GROUP BY/],
      ['SELECT DISTINCT n FROM t', /DISTINCT/],
      ['SELECT id FROM t ORDER BY id LIMIT 5', /LIMIT/],
      ['SELECT id FROM t WHERE id IN (SELECT t_id FROM u)', /subquery/],
      ['SELECT id FROM t WHERE EXISTS (SELECT 1 FROM g WHERE g.id = t.n)', /subquery/],
      ['SELECT id FROM t UNION SELECT j FROM u', /compound|UNION|subquery/],
      ['SELECT id, row_number() OVER (ORDER BY id) FROM t', /window/],
      ['WITH x AS (SELECT id FROM t) SELECT * FROM x', /WITH/],
      ['SELECT t.id FROM t LEFT JOIN u ON u.t_id = t.id WHERE u.w IS NULL', /right of a LEFT JOIN/],
      [
        'SELECT t.id FROM t LEFT JOIN u ON u.t_id = t.id JOIN g ON g.id = t.n',
        /inner join after a LEFT JOIN/,
      ],
      ['SELECT t.id FROM u RIGHT JOIN t ON u.t_id = t.id', /RIGHT JOIN/],
      ['SELECT t.id, j.value FROM t, json_each(t.v) AS j', /table-valued function/],
      ['SELECT 1', /no FROM/],
      ['VALUES (1), (2)', /VALUES/],
    ] as const) {
      const p = plan(sql)
      assert.ok(p.mode === 'full', sql)
      assert.match(p.reason, reason, sql)
      // The tables a full re-evaluation watches come from the compiled program.
      if (sql.includes('FROM t')) assert.ok(p.tables.includes('t'), `${sql}: ${p.tables.join()}`)
    }
    const sub = plan('SELECT id FROM t WHERE EXISTS (SELECT 1 FROM g WHERE g.id = t.n)')
    assert.deepEqual(
      [...sub.tables].sort(),
      ['g', 't'],
      'tables read only in a subquery are watched',
    )
  })

  it('subs - with full_reevaluation = false those shapes are refused, saying why', () => {
    refused(
      'SELECT count(*) FROM t',
      'REFUSED',
      /cannot be maintained incrementally \(an aggregate function\).*full_reevaluation = false/,
      undefined,
      strict,
    )
    refused('SELECT n FROM t GROUP BY n', 'REFUSED', /\(GROUP BY\)/, undefined, strict)
    refused(
      'SELECT t.id FROM t LEFT JOIN u ON u.t_id = t.id WHERE u.w = 1',
      'REFUSED',
      /WHERE reads a table on the right of a LEFT JOIN/,
      undefined,
      strict,
    )
    assert.equal(plan('SELECT id FROM t', undefined, strict).mode, 'incremental')
  })

  it('subs - statements that cannot be subscribed to are refused with the reason', () => {
    refused('INSERT INTO t (id) VALUES (1)', 'REFUSED', /needs a SELECT statement, not "INSERT"/)
    refused('DELETE FROM t', 'REFUSED', /needs a SELECT statement/)
    refused('PRAGMA table_info(t)', 'REFUSED', /needs a SELECT statement/)
    refused('SELECT 1; SELECT 2', 'REFUSED', /one statement/)
    refused('SELECT * FROM nope', 'SQL_ERROR', /no such table: nope/)
    refused('SELEC 1', 'REFUSED', /needs a SELECT statement/)
    refused('SELECT * FROM t WHERE', 'SQL_ERROR', /incomplete input/)
    refused(
      'SELECT * FROM __patina_sites',
      'REFUSED',
      /"__patina_sites", which is not a replicated table/,
    )
    refused('SELECT * FROM t__patina_clock', 'REFUSED', /not a replicated table/)
    refused('SELECT name FROM sqlite_schema', 'REFUSED', /not a replicated table/)
    refused(
      "SELECT * FROM pragma_table_info('t')",
      'REFUSED',
      /pragma_table_info\(\) reads the schema/,
    )
    refused(
      'SELECT id, random() FROM t',
      'REFUSED',
      /random\(\), whose result changes without any write/,
    )
    refused('SELECT * FROM t WHERE n > changes()', 'REFUSED', /changes\(\)/)
    refused("SELECT * FROM t WHERE v < datetime('now')", 'REFUSED', /current time/)
    refused("SELECT * FROM t WHERE v < date('NOW', '-1 day')", 'REFUSED', /current time/)
    refused('SELECT * FROM t WHERE v < date()', 'REFUSED', /current time/)
    refused("SELECT strftime('%s') FROM t", 'REFUSED', /current time/)
    refused('SELECT * FROM t WHERE v < CURRENT_TIMESTAMP', 'REFUSED', /CURRENT_TIMESTAMP/)
    refused('SELECT * FROM t WHERE v < datetime(?)', 'REFUSED', /current time/, ['now'])
    refused('SELECT * FROM t WHERE id = ?', 'REFUSED', /has no value: 0 given/, [])
    refused(
      'SELECT * FROM t WHERE id = ?',
      'REFUSED',
      /2 parameters given but the statement uses 1/,
      [1n, 2n],
    )
    refused('SELECT * FROM t WHERE id = :id', 'REFUSED', /named parameter :id has no value/, {
      other: 1n,
    })
  })

  it('subs - the same query spelled differently shares one key; other parameters do not', () => {
    const a = plan('SELECT id, v FROM t WHERE n = ?', [1n])
    const b = plan('select   id,v  from T -- a comment\n where n=:n', { n: 1n })
    const c = plan('SELECT id, v FROM t WHERE n = ?', [1.0])
    const d = plan('SELECT id, v FROM t WHERE n = ?', ['1'])
    assert.equal(a.key, b.key)
    assert.notEqual(a.key, c.key, 'INTEGER 1 and REAL 1.0 are different parameters')
    assert.notEqual(a.key, d.key)
    assert.notEqual(
      plan("SELECT id FROM t WHERE v = 'a'").key,
      plan("SELECT id FROM t WHERE v = 'A'").key,
    )
  })
})
