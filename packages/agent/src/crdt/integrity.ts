/**
 * Is this database still the way Patina left it? Capture works only while every capture trigger
 * is in place: a `DROP TRIGGER` from the sqlite3 CLI turns it off for good, and rows written
 * after that never replicate. So the replica inspects the file when it opens and refuses to
 * start on one that was changed from outside; `patina check` runs the same inspection on a
 * read-only connection.
 *
 * Telling tampering from age: every trigger Patina creates is recorded in `__patina_triggers`
 * (name, table, SHA-256 of its text) in the same transaction that creates it. At open:
 * - a recorded trigger that is missing, sits on another table or has another text was dropped
 *   or altered from outside (Patina never does that without updating the record);
 * - a trigger on one of Patina's tables that is not recorded was added from outside;
 * - a trigger the current code generates differently from the recorded one was written by an
 *   older Patina: it is regenerated (and recorded) at open;
 * - a file without any record was written by a Patina older than the record: its capture
 *   triggers (which every version created under the same names) must exist and call the
 *   capture function, then everything is regenerated and recorded. An empty record next to
 *   guard triggers means the record itself was emptied.
 * The internal tables must also have the columns this code expects (clock and version index
 * tables per replicated table, the bookkeeping tables).
 */
import { createHash } from 'node:crypto'
import Database from 'better-sqlite3'
import { readCrrTable, type CrrTable } from './crr-table.ts'
import {
  cellDbvCol,
  cellSeqCol,
  cellSiteCol,
  cellVersionCol,
  clockTable,
  GUARD_MARK,
  isInternalName,
  LEGACY_CAPTURE_FUNCTION,
  CAPTURE_FUNCTION,
  q,
  triggerName,
  versionIndexTable,
} from './names.ts'
import {
  BOOKKEEPING_DDL,
  CAPTURE_TRIGGERS,
  guardTriggerDefs,
  TRIGGER_RECORD_TABLE,
  triggerDefs,
  type TriggerDef,
} from './table-ddl.ts'
import { VERSION_BUFFER_DDL } from './version-buffer.ts'

/** What an inspection found. */
export interface Inspection {
  /** Changes made from outside Patina, in words; empty when there are none. */
  readonly problems: readonly string[]
  /** Triggers to create (or replace): new, or generated differently by an older Patina. */
  readonly install: readonly TriggerDef[]
  /** Recorded triggers this code no longer keeps: drop them and their record. */
  readonly retire: readonly string[]
  /** True when the file has no trigger record yet (written by an older Patina). */
  readonly unrecorded: boolean
  /** Replicated tables inspected. */
  readonly tables: number
  /** Triggers checked (present in the file). */
  readonly triggers: number
}

/** The replica refuses to open a database changed from outside Patina. */
export class IntegrityError extends Error {
  override readonly name = 'IntegrityError'
  readonly problems: readonly string[]

  constructor(path: string, problems: readonly string[]) {
    super(
      `refusing to open ${path}: it was changed outside Patina (${problems.join('; ')}). ` +
        RECOVERY,
    )
    this.problems = problems
  }
}

/** How to recover from tampering, appended to the refusal. */
export const RECOVERY =
  'Writes made since then may not have been captured, so its data cannot be trusted to ' +
  'replicate: restore the file from a backup, or move it away and start the agent on an empty ' +
  'database so it copies the data from a replica.'

export const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex')

interface ColumnInfo {
  name: string
  type: string
  notnull: number
  pk: number
}

function columnsOf(db: Database.Database, table: string): ColumnInfo[] {
  const rows = db.prepare(`PRAGMA table_xinfo(${q(table)})`).all() as Record<string, unknown>[]
  return rows
    .filter((r) => Number(r.hidden) === 0)
    .map((r) => ({
      name: String(r.name),
      type: String(r.type),
      notnull: Number(r.notnull),
      pk: Number(r.pk),
    }))
}

let bookkeepingColumns: Map<string, ColumnInfo[]> | undefined

/** The bookkeeping tables and their columns, as this code creates them. */
function expectedBookkeeping(): Map<string, ColumnInfo[]> {
  if (bookkeepingColumns !== undefined) return bookkeepingColumns
  const scratch = new Database(':memory:')
  try {
    for (const sql of [...BOOKKEEPING_DDL, ...VERSION_BUFFER_DDL]) scratch.exec(sql)
    const names = scratch
      .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
      .pluck()
      .all() as string[]
    bookkeepingColumns = new Map(names.map((n) => [n, columnsOf(scratch, n)]))
    return bookkeepingColumns
  } finally {
    scratch.close()
  }
}

/** Names of Patina's bookkeeping tables (one of each per database). */
export function bookkeepingTables(): string[] {
  return [...expectedBookkeeping().keys()]
}

/** Guard triggers of the bookkeeping tables. */
export function bookkeepingTriggerDefs(): TriggerDef[] {
  return bookkeepingTables().flatMap((t) => guardTriggerDefs(t))
}

function describeColumns(cols: readonly ColumnInfo[]): string {
  return cols.map((c) => c.name).join(', ')
}

/** Differences between a table's columns and the expected ones, in words (or null). */
function columnProblem(
  table: string,
  actual: readonly ColumnInfo[],
  expected: readonly { name: string; type?: string; notnull?: number; pk?: number }[],
): string | null {
  const byName = new Map(actual.map((c) => [c.name.toLowerCase(), c]))
  const missing = expected.filter((e) => !byName.has(e.name.toLowerCase())).map((e) => e.name)
  const known = new Set(expected.map((e) => e.name.toLowerCase()))
  const extra = actual.filter((c) => !known.has(c.name.toLowerCase())).map((c) => c.name)
  const altered = expected
    .filter((e) => {
      const a = byName.get(e.name.toLowerCase())
      if (a === undefined) return false
      return (
        (e.type !== undefined && a.type.toUpperCase() !== e.type.toUpperCase()) ||
        (e.notnull !== undefined && a.notnull !== e.notnull) ||
        (e.pk !== undefined && a.pk !== e.pk)
      )
    })
    .map((e) => e.name)
  if (missing.length + extra.length + altered.length === 0) return null
  const parts = [
    missing.length > 0 ? `missing ${missing.join(', ')}` : '',
    extra.length > 0 ? `unexpected ${extra.join(', ')}` : '',
    altered.length > 0 ? `altered ${altered.join(', ')}` : '',
  ].filter((p) => p !== '')
  return (
    `table "${table}" does not have the columns Patina expects (${parts.join('; ')}; ` +
    `it has ${describeColumns(actual)})`
  )
}

function clockColumns(t: CrrTable): { name: string; pk?: number }[] {
  return [
    ...t.pk.map((p, i) => ({ name: p.name, pk: i + 1 })),
    { name: '__cl' },
    { name: '__cs' },
    { name: '__cd' },
    { name: '__cq' },
    ...t.cols.flatMap((c) =>
      [cellVersionCol, cellSiteCol, cellDbvCol, cellSeqCol].map((f) => ({ name: f(c) })),
    ),
  ]
}

function versionIndexColumns(t: CrrTable): { name: string }[] {
  return [
    { name: '__site' },
    { name: '__dbv' },
    ...t.pk.map((p) => ({ name: p.name })),
    { name: '__refs' },
  ]
}

interface SchemaTrigger {
  name: string
  table: string
  sql: string
}

/**
 * Inspects the database on `db` (read-only: it writes nothing). The bookkeeping tables are
 * expected to exist, except the trigger record in a file an older Patina wrote.
 */
export function inspect(db: Database.Database): Inspection {
  const problems: string[] = []
  const objects = db.prepare('SELECT type, name, tbl_name, sql FROM sqlite_schema').raw().all() as [
    string,
    string,
    string,
    string | null,
  ][]
  const tablesInFile = new Map(
    objects.filter(([type]) => type === 'table').map(([, name]) => [name.toLowerCase(), name]),
  )
  const actualTriggers = new Map<string, SchemaTrigger>(
    objects
      .filter(([type]) => type === 'trigger')
      .map(([, name, table, sql]) => [name.toLowerCase(), { name, table, sql: sql ?? '' }]),
  )

  // Bookkeeping tables and their columns.
  const expected = expectedBookkeeping()
  for (const [table, cols] of expected) {
    if (!tablesInFile.has(table)) {
      if (table !== TRIGGER_RECORD_TABLE) problems.push(`table "${table}" is missing`)
      continue
    }
    // Databases written before "parked" was named so call that column `held`.
    const actual = columnsOf(db, table).map((c) =>
      table === '__patina_partials' && c.name === 'held' ? { ...c, name: 'parked' } : c,
    )
    const problem = columnProblem(table, actual, cols)
    if (problem !== null) problems.push(problem)
  }
  if (!tablesInFile.has('__patina_tables')) {
    return { problems, install: [], retire: [], unrecorded: true, tables: 0, triggers: 0 }
  }

  // Replicated tables, their clock and version index tables, and the triggers they need.
  const names = db
    .prepare('SELECT name FROM __patina_tables ORDER BY name')
    .pluck()
    .all() as string[]
  const wanted: TriggerDef[] = bookkeepingTriggerDefs()
  const patinaTables = new Set(expected.keys())
  const crrs: CrrTable[] = []
  for (const name of names) {
    patinaTables.add(name.toLowerCase())
    if (!tablesInFile.has(name.toLowerCase())) {
      problems.push(`replicated table "${name}" is missing`)
      continue
    }
    const crr = readCrrTable(db, name)
    crrs.push(crr)
    for (const [internal, cols] of [
      [clockTable(name), clockColumns(crr)],
      [versionIndexTable(name), versionIndexColumns(crr)],
    ] as const) {
      patinaTables.add(internal.toLowerCase())
      if (!tablesInFile.has(internal.toLowerCase())) {
        problems.push(`table "${internal}" (metadata of "${name}") is missing`)
        continue
      }
      const problem = columnProblem(internal, columnsOf(db, internal), cols)
      if (problem !== null) problems.push(problem)
    }
    wanted.push(...triggerDefs(crr))
  }

  const record = tablesInFile.has(TRIGGER_RECORD_TABLE)
    ? new Map(
        (
          db.prepare(`SELECT name, tbl, sha256 FROM ${TRIGGER_RECORD_TABLE}`).raw().all() as [
            string,
            string,
            string,
          ][]
        ).map(([name, table, hash]) => [name.toLowerCase(), { name, table, hash }]),
      )
    : new Map<string, { name: string; table: string; hash: string }>()
  const unrecorded = record.size === 0
  const onPatinaTable = (t: SchemaTrigger): boolean => patinaTables.has(t.table.toLowerCase())
  const where = (table: string): string => `on table "${table}"`

  if (!unrecorded) {
    for (const r of record.values()) {
      const actual = actualTriggers.get(r.name.toLowerCase())
      if (actual === undefined) {
        problems.push(`trigger "${r.name}" ${where(r.table)} is missing (dropped outside Patina)`)
      } else if (
        actual.table.toLowerCase() !== r.table.toLowerCase() ||
        sha256(actual.sql) !== r.hash
      ) {
        problems.push(`trigger "${r.name}" ${where(r.table)} was altered outside Patina`)
      } else if (!patinaTables.has(r.table.toLowerCase())) {
        problems.push(
          `trigger "${r.name}" is on table "${r.table}", which is not listed in __patina_tables`,
        )
      }
    }
    for (const t of actualTriggers.values()) {
      if (record.has(t.name.toLowerCase())) continue
      if (onPatinaTable(t) || isInternalName(t.name)) {
        problems.push(`trigger "${t.name}" ${where(t.table)} was not created by Patina`)
      }
    }
  } else {
    // Written by a Patina older than the record: its capture triggers must be there.
    for (const t of actualTriggers.values()) {
      if (t.name.includes(GUARD_MARK)) {
        problems.push(
          `${TRIGGER_RECORD_TABLE} is empty but guard trigger "${t.name}" exists: ` +
            `the record of Patina's triggers was deleted outside Patina`,
        )
        break
      }
    }
    for (const crr of crrs) {
      for (const what of CAPTURE_TRIGGERS) {
        if (what === 'upd' && crr.cols.length === 0) continue
        const name = triggerName(crr.name, what)
        const actual = actualTriggers.get(name.toLowerCase())
        if (actual === undefined) {
          problems.push(`trigger "${name}" ${where(crr.name)} is missing (dropped outside Patina)`)
        } else if (
          actual.table.toLowerCase() !== crr.name.toLowerCase() ||
          !(
            actual.sql.includes(`${LEGACY_CAPTURE_FUNCTION}()`) ||
            actual.sql.includes(`${CAPTURE_FUNCTION}()`)
          )
        ) {
          problems.push(`trigger "${name}" ${where(crr.name)} was altered outside Patina`)
        }
      }
    }
    for (const t of actualTriggers.values()) {
      if (onPatinaTable(t) && !isInternalName(t.name)) {
        problems.push(`trigger "${t.name}" ${where(t.table)} was not created by Patina`)
      }
    }
  }

  const wantedNames = new Set(wanted.map((d) => d.name.toLowerCase()))
  const install = wanted.filter((d) => {
    const r = record.get(d.name.toLowerCase())
    const actual = actualTriggers.get(d.name.toLowerCase())
    return r === undefined || r.hash !== sha256(d.sql) || actual?.sql !== d.sql
  })
  const retire = [...record.values()]
    .filter((r) => !wantedNames.has(r.name.toLowerCase()))
    .map((r) => r.name)
  if (unrecorded) {
    // Triggers older Patinas kept and this one does not (e.g. `<t>__patina_clock_ins`).
    for (const t of actualTriggers.values()) {
      if (onPatinaTable(t) && isInternalName(t.name) && !wantedNames.has(t.name.toLowerCase())) {
        retire.push(t.name)
      }
    }
  }
  return {
    problems,
    install,
    retire,
    unrecorded,
    tables: crrs.length,
    triggers: actualTriggers.size,
  }
}

/**
 * Creates (or replaces) triggers and records them; drops and forgets `retire`. Must run inside
 * a write transaction on the agent's writer (the record has guard triggers of its own).
 */
export function installTriggers(
  db: Database.Database,
  defs: readonly TriggerDef[],
  retire: readonly string[] = [],
): void {
  const record = db.prepare(
    `INSERT INTO ${TRIGGER_RECORD_TABLE} (name, tbl, sha256) VALUES (?, ?, ?) ` +
      'ON CONFLICT (name) DO UPDATE SET tbl = excluded.tbl, sha256 = excluded.sha256',
  )
  const forget = db.prepare(`DELETE FROM ${TRIGGER_RECORD_TABLE} WHERE name = ?`)
  for (const name of retire) {
    db.exec(`DROP TRIGGER IF EXISTS ${q(name)}`)
    forget.run(name)
  }
  for (const d of defs) {
    db.exec(`DROP TRIGGER IF EXISTS ${q(d.name)}`)
    db.exec(d.sql)
    record.run(d.name, d.table, sha256(d.sql))
  }
}
