/**
 * DDL that turns a plain table into a replicated one: the clock table, the version index and
 * the plain-SQL triggers that capture local writes.
 *
 * Layout (see docs/architecture.md, "CRDT metadata"):
 * - `<t>__patina_clock`: one row per key ever seen, keyed by the table's own primary key (same
 *   declared types, so lookups from triggers are index seeks). `__cl` is the causal length (odd:
 *   the row exists, even: deleted). `__cs/__cd/__cq` are the clock of the row sentinel (site
 *   ordinal, origin version, seq), NULL while implicit. Each data column `c` has a cell clock
 *   `__v_c` (col_version), `__s_c` (origin site ordinal), `__d_c` (origin version), `__q_c`
 *   (seq); NULL means "no clock": the cell holds its DEFAULT at version 0.
 * - `<t>__patina_vidx`: for each (origin, version) the keys that still hold at least one clock
 *   stamped with it, with a reference count, so the changes of one version are found by an
 *   index range scan. It is kept exact by triggers on the clock table.
 *
 * The capture triggers get the transaction's version and seq from JS functions
 * (`patina_dbv()`, `patina_seq()`), and run only when `write_through_the_patina_agent()` says a
 * local write is in progress. A connection without those functions (the sqlite3 CLI, another
 * program) fails with "no such function: write_through_the_patina_agent" on any write to a
 * replicated table instead of writing untracked rows.
 *
 * Patina's own tables (the bookkeeping tables below, every clock table; a version index for
 * DELETE) carry guard triggers, `AFTER ... WHEN 0 AND write_through_the_patina_agent()`: SQLite resolves the
 * function when it compiles a write, so outside the agent the write fails the same way, while
 * inside the agent the trigger body never runs and the function is never called (a constant
 * false WHEN costs one sub-program call per row). Inside the agent, user statements cannot
 * name internal tables (statement-guard.ts), so only Patina's own code writes them.
 */
import type { CrrTable } from './crr-table.ts'
import {
  CAPTURE_FUNCTION,
  GUARD_MARK,
  cellDbvCol,
  cellSeqCol,
  cellSiteCol,
  cellVersionCol,
  clockTable,
  q,
  triggerName,
  versionIndexTable,
} from './names.ts'
import { storedValueSql } from './text-check.ts'

const DBV = 'patina_dbv()'
const CAPTURING = `${CAPTURE_FUNCTION}()`
const SEQ = 'patina_seq()'

/**
 * `patina_seq()` (one seq) or `patina_seqs(n)` (a block of n), given the values the write
 * stores in the cells it stamps, so that TEXT that is not valid UTF-8 is refused without a
 * call of its own (text-check.ts).
 */
function seqSql(fn: 'patina_seq' | 'patina_seqs', args: readonly string[]): string {
  return `${fn}(${args.join(', ')})`
}

/** Every column of the row `rec` (key first), as `seqSql` takes them. */
function storedRowSql(t: CrrTable, rec: string): string[] {
  return [...t.pk.map((p) => p.name), ...t.cols].map((c) => storedValueSql(`${rec}.${q(c)}`))
}

function pkDefs(t: CrrTable): string {
  return t.pk.map((p) => `${q(p.name)} ${p.type} NOT NULL`).join(', ')
}

function pkList(t: CrrTable, prefix = ''): string {
  return t.pk.map((p) => prefix + q(p.name)).join(', ')
}

function pkMatch(t: CrrTable, rec: string, alias = ''): string {
  return t.pk.map((p) => `${alias}${q(p.name)} = ${rec}.${q(p.name)}`).join(' AND ')
}

function cellDefs(col: string): string {
  return [cellVersionCol, cellSiteCol, cellDbvCol, cellSeqCol]
    .map((f) => `${q(f(col))} INTEGER`)
    .join(', ')
}

export function createMetadataSql(t: CrrTable): string[] {
  const cells = t.cols.map((c) => `, ${cellDefs(c)}`).join('')
  return [
    `CREATE TABLE ${q(clockTable(t.name))} (${pkDefs(t)}, __cl INTEGER NOT NULL, ` +
      `__cs INTEGER, __cd INTEGER, __cq INTEGER${cells}, PRIMARY KEY (${pkList(t)})) WITHOUT ROWID`,
    `CREATE TABLE ${q(versionIndexTable(t.name))} (__site INTEGER NOT NULL, ` +
      `__dbv INTEGER NOT NULL, ${pkDefs(t)}, __refs INTEGER NOT NULL, ` +
      `PRIMARY KEY (__site, __dbv, ${pkList(t)})) WITHOUT ROWID`,
  ]
}

export function addColumnMetadataSql(t: CrrTable, col: string): string[] {
  return [cellVersionCol, cellSiteCol, cellDbvCol, cellSeqCol].map(
    (f) => `ALTER TABLE ${q(clockTable(t.name))} ADD COLUMN ${q(f(col))} INTEGER`,
  )
}

const TRIGGERS = ['ins', 'upd', 'upd_pk', 'del', 'clock_ins', 'clock_upd', 'clock_del'] as const

/** Drops every trigger Patina keeps (or kept, in older versions) for table `t`. */
export function dropTriggersSql(t: CrrTable): string[] {
  return [...TRIGGERS.map((w) => triggerName(t.name, w)), ...triggerDefs(t).map((d) => d.name)]
    .filter((name, i, all) => all.indexOf(name) === i)
    .map((name) => `DROP TRIGGER IF EXISTS ${q(name)}`)
}

/** A changed-value test that tells 1 from 1.0 and 'a' from x'61'. */
/**
 * Whether a column's value changed, byte for byte: compared with BINARY whatever the column's
 * collation (under NOCASE, 'abc' -> 'ABC' would look unchanged, be captured by nobody, and the
 * replicas would diverge), and by type (1 and 1.0 compare equal).
 */
function changed(col: string): string {
  const c = q(col)
  return `(NEW.${c} IS NOT OLD.${c} COLLATE BINARY OR typeof(NEW.${c}) <> typeof(OLD.${c}))`
}

/**
 * Statements that record a local insert (or re-insert) of the row `rec` ('NEW'): one upsert of
 * the clock row. The transaction's version and a block of seqs (one per column) are fetched once
 * per row; a re-insert over a tombstone also stamps the sentinel, with one more seq.
 */
function captureInsert(t: CrrTable, rec: string): string[] {
  const clock = q(clockTable(t.name))
  // A key without a clock row gets all its stamps in this statement's version: count them in the
  // version index here (cheaper than a trigger on the clock table); an existing clock row is
  // updated instead, and the clock table's update trigger moves its stamps.
  const freshIndex =
    `INSERT INTO ${q(versionIndexTable(t.name))} (__site, __dbv, ${pkList(t)}, __refs) ` +
    `SELECT 0, ${DBV}, ${pkList(t, rec + '.')}, ${Math.max(t.cols.length, 1)} ` +
    `WHERE NOT EXISTS (SELECT 1 FROM ${clock} WHERE ${pkMatch(t, rec)}) ` +
    `ON CONFLICT DO UPDATE SET __refs = __refs + excluded.__refs`
  if (t.cols.length === 0) {
    // Exactly one of the two statements stamps the sentinel (the key's only stamp).
    const keySeq = seqSql('patina_seq', storedRowSql(t, rec))
    return [
      freshIndex,
      `UPDATE ${clock} SET __cl = __cl + 1, __cs = 0, __cd = ${DBV}, __cq = ${keySeq} ` +
        `WHERE ${pkMatch(t, rec)} AND __cl % 2 = 0`,
      `INSERT INTO ${clock} (${pkList(t)}, __cl, __cs, __cd, __cq) ` +
        `SELECT ${pkList(t, rec + '.')}, 1, 0, ${DBV}, ${keySeq} ` +
        `WHERE NOT EXISTS (SELECT 1 FROM ${clock} WHERE ${pkMatch(t, rec)})`,
    ]
  }
  const names = t.cols.flatMap((c) => [
    cellVersionCol(c),
    cellSiteCol(c),
    cellDbvCol(c),
    cellSeqCol(c),
  ])
  const values = t.cols.map((_, i) => `1, 0, x.d, x.s + ${i}`).join(', ')
  const first = q(cellDbvCol(t.cols[0] as string))
  const seqs = seqSql('patina_seqs', [String(t.cols.length), ...storedRowSql(t, rec)])
  const dead = '__cl % 2 = 0'
  const updates = [
    `__cs = CASE WHEN ${dead} THEN 0 ELSE __cs END`,
    `__cd = CASE WHEN ${dead} THEN excluded.${first} ELSE __cd END`,
    `__cq = CASE WHEN ${dead} THEN ${SEQ} ELSE __cq END`,
    `__cl = __cl + (${dead})`,
    ...t.cols.map((c) => {
      const v = q(cellVersionCol(c))
      return (
        `${v} = coalesce(${v}, 0) + 1, ${q(cellSiteCol(c))} = 0, ` +
        `${q(cellDbvCol(c))} = excluded.${q(cellDbvCol(c))}, ` +
        `${q(cellSeqCol(c))} = excluded.${q(cellSeqCol(c))}`
      )
    }),
  ].join(', ')
  return [
    freshIndex,
    `INSERT INTO ${clock} (${pkList(t)}, __cl, ${names.map(q).join(', ')}) ` +
      `SELECT ${pkList(t, rec + '.')}, 1, ${values} ` +
      `FROM (SELECT ${DBV} AS d, ${seqs} AS s) AS x WHERE true ` +
      `ON CONFLICT (${pkList(t)}) DO UPDATE SET ${updates}`,
  ]
}

/** Statement that records a local delete of the row `rec` ('OLD'). */
function captureDelete(t: CrrTable, rec: string): string {
  const clears = t.cols
    .flatMap((c) => [cellVersionCol(c), cellSiteCol(c), cellDbvCol(c), cellSeqCol(c)])
    .map((n) => `, ${q(n)} = NULL`)
    .join('')
  return (
    `UPDATE ${q(clockTable(t.name))} SET __cl = __cl + 1, __cs = 0, __cd = ${DBV}, ` +
    `__cq = ${SEQ}${clears} WHERE ${pkMatch(t, rec)} AND __cl % 2 = 1`
  )
}

/** A trigger Patina creates: its name, the table it is on, and its exact CREATE TRIGGER text. */
export interface TriggerDef {
  readonly name: string
  readonly table: string
  readonly sql: string
}

function trigger(
  name: string,
  timing: string,
  when: string | null,
  body: string[],
  table: string,
): TriggerDef {
  const whenSql = when === null ? '' : ` WHEN ${when}`
  const sql = `CREATE TRIGGER ${q(name)} ${timing}${whenSql} BEGIN ${body.map((s) => s + ';').join(' ')} END`
  return { name, table, sql }
}

const GUARD_OPS = ['ins', 'upd', 'del'] as const
const GUARD_EVENTS = { ins: 'INSERT', upd: 'UPDATE', del: 'DELETE' } as const

/**
 * Guard triggers that make writes to one of Patina's tables from outside the agent fail with
 * "no such function: write_through_the_patina_agent" (see the file comment). `ops` are the
 * operations to guard (a clock table's UPDATE and DELETE triggers already call the function).
 */
export function guardTriggerDefs(
  table: string,
  ops: readonly (typeof GUARD_OPS)[number][] = GUARD_OPS,
): TriggerDef[] {
  return ops.map((op) =>
    trigger(
      `${table}${GUARD_MARK}${op}`,
      `AFTER ${GUARD_EVENTS[op]} ON ${q(table)}`,
      `0 AND ${CAPTURING}`,
      ['SELECT NULL'],
      table,
    ),
  )
}

function captureTriggers(t: CrrTable): TriggerDef[] {
  const table = q(t.name)
  const pkSame = t.pk.map((p) => `NEW.${q(p.name)} IS OLD.${q(p.name)}`).join(' AND ')
  const out = [
    trigger(
      triggerName(t.name, 'ins'),
      `AFTER INSERT ON ${table}`,
      CAPTURING,
      captureInsert(t, 'NEW'),
      t.name,
    ),
    trigger(
      triggerName(t.name, 'upd_pk'),
      `AFTER UPDATE ON ${table}`,
      `${CAPTURING} AND NOT (${pkSame})`,
      [captureDelete(t, 'OLD'), ...captureInsert(t, 'NEW')],
      t.name,
    ),
    trigger(
      triggerName(t.name, 'del'),
      `AFTER DELETE ON ${table}`,
      CAPTURING,
      [captureDelete(t, 'OLD')],
      t.name,
    ),
  ]
  if (t.cols.length > 0) {
    const sets = t.cols
      .map((c) => {
        const when = changed(c)
        const keep = (f: (c: string) => string, v: string): string =>
          `${q(f(c))} = CASE WHEN ${when} THEN ${v} ELSE ${q(f(c))} END`
        const stored = storedValueSql(`NEW.${q(c)}`)
        return [
          keep(cellVersionCol, `coalesce(${q(cellVersionCol(c))}, 0) + 1`),
          keep(cellSiteCol, '0'),
          keep(cellDbvCol, DBV),
          keep(cellSeqCol, seqSql('patina_seq', [stored])),
        ].join(', ')
      })
      .join(', ')
    out.push(
      trigger(
        triggerName(t.name, 'upd'),
        `AFTER UPDATE ON ${table}`,
        `${CAPTURING} AND ${pkSame} AND (${t.cols.map(changed).join(' OR ')})`,
        [`UPDATE ${q(clockTable(t.name))} SET ${sets} WHERE ${pkMatch(t, 'NEW')}`],
        t.name,
      ),
    )
  }
  return out
}

interface Slot {
  site: string
  dbv: string
}

/**
 * Triggers on the clock table that keep the version index's reference counts exact for local
 * writes. The merge path (table-statements.ts) knows each row's old and new stamps and updates
 * the index itself with one write per changed stamp, so these run only while capturing.
 */
function versionIndexTriggers(t: CrrTable): TriggerDef[] {
  const clock = q(clockTable(t.name))
  const vidx = q(versionIndexTable(t.name))
  const slots: Slot[] = [
    ...t.cols.map((c) => ({ site: q(cellSiteCol(c)), dbv: q(cellDbvCol(c)) })),
    { site: '__cs', dbv: '__cd' },
  ]
  const key = (rec: string, s: Slot): string =>
    `__site = ${rec}.${s.site} AND __dbv = ${rec}.${s.dbv} AND ${t.pk
      .map((p) => `${q(p.name)} = ${rec}.${q(p.name)}`)
      .join(' AND ')}`
  const same = (a: string, sa: Slot, b: string, sb: Slot): string =>
    `(${a}.${sa.site} IS ${b}.${sb.site} AND ${a}.${sa.dbv} IS ${b}.${sb.dbv})`
  const slotChanged = (s: Slot): string => `NOT ${same('OLD', s, 'NEW', s)}`
  const increment = (rec: string, s: Slot, refs: string, cond: string): string =>
    `INSERT INTO ${vidx} (__site, __dbv, ${pkList(t)}, __refs) ` +
    `SELECT ${rec}.${s.site}, ${rec}.${s.dbv}, ${pkList(t, rec + '.')}, ${refs} ` +
    `WHERE ${rec}.${s.dbv} IS NOT NULL AND ${cond} ` +
    `ON CONFLICT DO UPDATE SET __refs = __refs + excluded.__refs`
  const decrement = (s: Slot): string[] => [
    `UPDATE ${vidx} SET __refs = __refs - 1 WHERE OLD.${s.dbv} IS NOT NULL AND ` +
      `${slotChanged(s)} AND ${key('OLD', s)}`,
  ]
  const dropZero = (s: Slot): string =>
    `DELETE FROM ${vidx} WHERE OLD.${s.dbv} IS NOT NULL AND ${slotChanged(s)} AND ` +
    `${key('OLD', s)} AND __refs <= 0`

  const onUpdate = [
    ...slots.flatMap(decrement),
    ...slots.map((s) => increment('NEW', s, '1', slotChanged(s))),
    ...slots.map(dropZero),
  ]
  const onDelete = slots.flatMap((s) => [
    `UPDATE ${vidx} SET __refs = __refs - 1 WHERE OLD.${s.dbv} IS NOT NULL AND ${key('OLD', s)}`,
    `DELETE FROM ${vidx} WHERE OLD.${s.dbv} IS NOT NULL AND ${key('OLD', s)} AND __refs <= 0`,
  ])
  const clockName = clockTable(t.name)
  return [
    trigger(
      triggerName(t.name, 'clock_upd'),
      `AFTER UPDATE ON ${clock}`,
      CAPTURING,
      onUpdate,
      clockName,
    ),
    trigger(
      triggerName(t.name, 'clock_del'),
      `AFTER DELETE ON ${clock}`,
      CAPTURING,
      onDelete,
      clockName,
    ),
  ]
}

/** The capture triggers of table `t` that older Patinas created too (integrity.ts). */
export const CAPTURE_TRIGGERS = ['ins', 'upd', 'upd_pk', 'del'] as const

/** Every trigger Patina keeps for the replicated table `t`: capture, version index, guards. */
export function triggerDefs(t: CrrTable): TriggerDef[] {
  return [
    ...captureTriggers(t),
    ...versionIndexTriggers(t),
    // The clock table's UPDATE and DELETE triggers call the function already.
    ...guardTriggerDefs(clockTable(t.name), ['ins']),
    // DELETE only: every local write inserts and updates version index rows (a guard fires per
    // row written: +15% CPU per one-row UPDATE transaction, measured), rows are deleted rarely.
    ...guardTriggerDefs(versionIndexTable(t.name), ['del']),
  ]
}

export function createTriggersSql(t: CrrTable): string[] {
  return triggerDefs(t).map((d) => d.sql)
}

/**
 * The table that records every trigger Patina created, by name, with the SHA-256 of its text, so
 * that the next open tells a trigger dropped or altered from outside (tampering) from one an
 * older Patina wrote differently (regenerated). See integrity.ts.
 */
export const TRIGGER_RECORD_TABLE = '__patina_triggers'

/** Patina's bookkeeping tables (one of each per database), created when a replica opens. */
export const BOOKKEEPING_DDL = [
  `CREATE TABLE IF NOT EXISTS __patina_sites (ordinal INTEGER PRIMARY KEY, site_id BLOB NOT NULL UNIQUE)`,
  `CREATE TABLE IF NOT EXISTS __patina_heads (site INTEGER PRIMARY KEY, head INTEGER NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS __patina_gaps (site INTEGER NOT NULL, start_v INTEGER NOT NULL, ` +
    `end_v INTEGER NOT NULL, PRIMARY KEY (site, start_v)) WITHOUT ROWID`,
  `CREATE TABLE IF NOT EXISTS __patina_tables (name TEXT PRIMARY KEY NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS ${TRIGGER_RECORD_TABLE} (name TEXT PRIMARY KEY NOT NULL, ` +
    `tbl TEXT NOT NULL, sha256 TEXT NOT NULL) WITHOUT ROWID`,
]
