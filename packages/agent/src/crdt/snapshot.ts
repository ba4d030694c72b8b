/**
 * Snapshots of a replica's database: make one (`patina backup`), verify one and install one
 * (`patina restore`). One job: the file, its manifest, and the site bookkeeping around it.
 *
 * A snapshot is a plain SQLite file (optionally gzipped) holding the replicated tables, their
 * CRDT metadata and the version bookkeeping, taken online: SQLite's backup API copies the
 * pages of one read transaction (WAL: the writer is never blocked by it) in steps, so progress
 * can be shown. It is generic, with no node identity inside: the copy's own site (ordinal 0 of
 * `__patina_sites`) is moved to a fresh ordinal, as if it were any other origin, and per-node
 * state (partial and parked versions) is dropped. A manifest table, `__patina_snapshot`,
 * records the format version, the cluster id, a hash of the schema and the version vector
 * (per origin: head and gaps).
 *
 * Restoring writes beside the database, installs the node's own actor id (the old database's,
 * or a fresh one) at ordinal 0, keeps its own head at least as high as before (so no version
 * number is ever reused), and swaps with one rename after the old file is checkpointed and its
 * -wal/-shm are gone. A kill -9 at any step leaves either the old file or the new one, and a
 * re-run starts over from the snapshot.
 */
import { createHash, randomBytes } from 'node:crypto'
import {
  closeSync,
  createReadStream,
  createWriteStream,
  existsSync,
  fsyncSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs'
import { dirname } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { createGunzip, createGzip } from 'node:zlib'
import Database from 'better-sqlite3'
import { ACTOR_ID_BYTES, actorIdHex } from '../runtime/actor-id.ts'
import { openDb } from '../store/open-db.ts'
import { PATINA_VERSION } from '../version.ts'
import { diffSchema } from '../schema/diff-schema.ts'
import { loadSchemaFiles, parseSchema } from '../schema/parse-schema.ts'
import { readCurrentSchema } from '../schema/read-schema.ts'
import { inspect } from './integrity.ts'
import {
  CAPTURE_FUNCTIONS,
  cellSiteCol,
  clockTable,
  isInternalName,
  q,
  versionIndexTable,
} from './names.ts'
import type { VersionRange } from './version-ranges.ts'

/** The manifest table inside a snapshot (removed when the snapshot is installed). */
export const MANIFEST_TABLE = '__patina_snapshot'
/** Snapshot formats this code writes and reads. */
export const SNAPSHOT_FORMAT_VERSION = 1
/** Pages copied per backup step: each step holds SQLite's locks for about a millisecond. */
export const BACKUP_STEP_PAGES = 256

const SQLITE_MAGIC = Buffer.from('SQLite format 3\u0000', 'latin1')
const GZIP_MAGIC = Buffer.from([0x1f, 0x8b])

export class SnapshotError extends Error {
  override readonly name = 'SnapshotError'
}

/** Per origin (actor id in hex): head and missing ranges. */
export type VersionVector = Record<string, { head: number; gaps: VersionRange[] }>

export interface Manifest {
  readonly formatVersion: number
  readonly clusterId: number
  readonly schemaHash: string
  readonly patinaVersion: string
  readonly createdAt: string
  readonly versions: VersionVector
}

export interface BackupProgress {
  readonly totalPages: number
  readonly copiedPages: number
}

export interface BackupSummary {
  readonly path: string
  readonly bytes: number
  readonly pages: number
  readonly durationMs: number
  readonly compressed: boolean
  readonly versions: VersionVector
}

// ------------------------------------------------------------------ helpers

/** Makes writes to Patina's tables compile on a plain connection: capture stays off. */
function allowBookkeepingWrites(db: Database.Database): void {
  for (const name of CAPTURE_FUNCTIONS) {
    db.function(name, { deterministic: false, varargs: true }, () => 0)
  }
}

/** The version vector stored in `__patina_heads` / `__patina_gaps`, keyed by actor id hex. */
function readVersions(db: Database.Database): VersionVector {
  const ids = new Map<number, string>()
  for (const [ordinal, id] of db
    .prepare('SELECT ordinal, site_id FROM __patina_sites')
    .raw()
    .all() as [bigint, Buffer][]) {
    ids.set(Number(ordinal), actorIdHex(id))
  }
  const out: VersionVector = {}
  const bySite = new Map<number, { head: number; gaps: VersionRange[] }>()
  for (const [site, head] of db
    .prepare('SELECT site, head FROM __patina_heads WHERE head > 0 ORDER BY site')
    .raw()
    .all() as [bigint, bigint][]) {
    bySite.set(Number(site), { head: Number(head), gaps: [] })
  }
  for (const [site, s, e] of db
    .prepare('SELECT site, start_v, end_v FROM __patina_gaps ORDER BY site, start_v')
    .raw()
    .all() as [bigint, bigint, bigint][]) {
    bySite.get(Number(site))?.gaps.push([Number(s), Number(e)])
  }
  for (const [site, v] of bySite) {
    const id = ids.get(site)
    if (id !== undefined) out[id] = v
  }
  return out
}

/** SHA-256 of the replicated schema (tables and indexes not Patina's own), order-independent. */
export function schemaHash(db: Database.Database): string {
  const rows = db
    .prepare(
      "SELECT type, name, sql FROM sqlite_schema WHERE type IN ('table', 'index') AND sql IS NOT NULL ORDER BY type, name",
    )
    .raw()
    .all() as [string, string, string][]
  const h = createHash('sha256')
  for (const [type, name, sql] of rows) {
    if (!isInternalName(name)) h.update(`${type}\u0000${name}\u0000${sql}\u0000`)
  }
  return h.digest('hex')
}

/** Every (table, column) holding a site ordinal, for renumbering. */
function siteColumns(db: Database.Database): [string, string][] {
  const cols: [string, string][] = [
    ['__patina_heads', 'site'],
    ['__patina_gaps', 'site'],
    ['__patina_partials', 'site'],
    ['__patina_buffer', 'site'],
  ]
  const tables = db.prepare('SELECT name FROM __patina_tables').pluck().all() as string[]
  for (const t of tables) {
    cols.push([versionIndexTable(t), '__site'], [clockTable(t), '__cs'])
    const info = db.prepare(`PRAGMA table_info(${q(clockTable(t))})`).all() as { name: string }[]
    for (const { name } of info) {
      if (name.startsWith('__s_') && name !== cellSiteCol('')) cols.push([clockTable(t), name])
    }
  }
  return cols
}

/** Renumbers site ordinal `from` to `to` (unused) everywhere. Inside a transaction. */
function moveSite(db: Database.Database, from: number, to: number): void {
  for (const [table, col] of siteColumns(db)) {
    db.prepare(`UPDATE ${q(table)} SET ${q(col)} = ? WHERE ${q(col)} = ?`).run(to, from)
  }
  db.prepare('UPDATE __patina_sites SET ordinal = ? WHERE ordinal = ?').run(to, from)
}

function nextOrdinal(db: Database.Database): number {
  const max = db.prepare('SELECT max(ordinal) FROM __patina_sites').pluck().get() as bigint | null
  return max === null ? 1 : Number(max) + 1
}

function fsyncPath(path: string): void {
  const fd = openSync(path, 'r')
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

function readMagic(path: string): Buffer {
  const fd = openSync(path, 'r')
  try {
    const buf = Buffer.alloc(16)
    const n = readSync(fd, buf, 0, 16, 0)
    return buf.subarray(0, n)
  } finally {
    closeSync(fd)
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

// ------------------------------------------------------------------ backup

/**
 * Writes a snapshot of the database at `dbPath` to `dest`, while the agent keeps writing.
 * The copy is made beside `dest` and renamed into place when complete.
 */
export async function createSnapshot(
  dbPath: string,
  dest: string,
  options: {
    clusterId: number
    compress?: boolean
    stepPages?: number
    onProgress?: (p: BackupProgress) => void
  },
): Promise<BackupSummary> {
  if (!existsSync(dbPath))
    throw new SnapshotError(`no database at ${dbPath} (db.path of the config)`)
  const started = performance.now()
  const raw = `${dest}.partial`
  const packed = `${dest}.partial.gz`
  rmSync(raw, { force: true })
  rmSync(packed, { force: true })
  const source = openDb(dbPath, { readonly: true })
  let pages = 0
  try {
    // One read transaction for the whole copy: every step sees the same snapshot of the WAL
    // database, and the writer goes on (WAL readers do not block it).
    source.exec('BEGIN')
    source.prepare('SELECT count(*) FROM sqlite_schema').get()
    const step = options.stepPages ?? BACKUP_STEP_PAGES
    await source.backup(raw, {
      progress: ({ totalPages, remainingPages }) => {
        pages = totalPages
        options.onProgress?.({ totalPages, copiedPages: totalPages - remainingPages })
        return step
      },
    })
    source.exec('COMMIT')
  } catch (err) {
    rmSync(raw, { force: true })
    throw err
  } finally {
    source.close()
  }
  let versions: VersionVector
  try {
    versions = neutralise(raw, options.clusterId)
    if (options.compress === true) {
      await pipeline(createReadStream(raw), createGzip(), createWriteStream(packed))
      rmSync(raw)
      fsyncPath(packed)
      renameSync(packed, dest)
    } else {
      fsyncPath(raw)
      renameSync(raw, dest)
    }
    fsyncPath(dirname(dest))
  } catch (err) {
    rmSync(raw, { force: true })
    rmSync(packed, { force: true })
    throw err
  }
  return {
    path: dest,
    bytes: statSync(dest).size,
    pages,
    durationMs: performance.now() - started,
    compressed: options.compress === true,
    versions,
  }
}

/**
 * Removes node identity from a fresh copy: its own site becomes an ordinary origin, partial
 * and parked versions go, and the manifest is written. The file ends in rollback-journal mode
 * (one file, no -wal). Returns the version vector recorded.
 */
function neutralise(path: string, clusterId: number): VersionVector {
  const db = new Database(path)
  try {
    db.defaultSafeIntegers(true)
    db.pragma('journal_mode = DELETE')
    allowBookkeepingWrites(db)
    const versions = readVersions(db)
    db.transaction(() => {
      const self = db.prepare('SELECT 1 FROM __patina_sites WHERE ordinal = 0').get()
      if (self !== undefined) moveSite(db, 0, nextOrdinal(db))
      db.exec('DELETE FROM __patina_partials')
      db.exec('DELETE FROM __patina_buffer')
      db.exec(`CREATE TABLE ${MANIFEST_TABLE} (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)`)
      const manifest: Manifest = {
        formatVersion: SNAPSHOT_FORMAT_VERSION,
        clusterId,
        schemaHash: schemaHash(db),
        patinaVersion: PATINA_VERSION,
        createdAt: new Date().toISOString(),
        versions,
      }
      const put = db.prepare(`INSERT INTO ${MANIFEST_TABLE} (key, value) VALUES (?, ?)`)
      for (const [k, v] of Object.entries(manifest)) put.run(k, JSON.stringify(v))
    })()
    return versions
  } finally {
    db.close()
  }
}

// ------------------------------------------------------------------ verify

/**
 * Copies `input` (a snapshot, gzipped or not: told by its first bytes) to `dest`, decompressed.
 * Refuses anything that is neither SQLite nor gzip.
 */
export async function unpackSnapshot(input: string, dest: string): Promise<void> {
  if (!existsSync(input)) throw new SnapshotError(`no snapshot at ${input}`)
  const magic = readMagic(input)
  rmSync(dest, { force: true })
  try {
    if (magic.subarray(0, 2).equals(GZIP_MAGIC)) {
      await pipeline(createReadStream(input), createGunzip(), createWriteStream(dest))
    } else if (magic.equals(SQLITE_MAGIC)) {
      await pipeline(createReadStream(input), createWriteStream(dest))
    } else {
      throw new SnapshotError(`${input} is not a Patina snapshot (neither a SQLite file nor gzip)`)
    }
  } catch (err) {
    rmSync(dest, { force: true })
    if (err instanceof SnapshotError) throw err
    throw new SnapshotError(`${input} cannot be read as a snapshot: ${messageOf(err)}`)
  }
  if (!readMagic(dest).equals(SQLITE_MAGIC)) {
    rmSync(dest, { force: true })
    throw new SnapshotError(`${input} is not a Patina snapshot (its content is not a SQLite file)`)
  }
}

/**
 * Refuses a snapshot whose schema the schema files cannot reach by the additive rules (a table
 * or column in the snapshot that the files lack): the agent would refuse to start on it.
 * Older snapshots (the files add tables or columns) pass: the agent adds them at start.
 */
function checkSchema(db: Database.Database, schemaPaths: readonly string[]): void {
  if (schemaPaths.length === 0) return
  try {
    diffSchema(readCurrentSchema(db, isInternalName), parseSchema(loadSchemaFiles(schemaPaths)))
  } catch (err) {
    throw new SnapshotError(
      `the snapshot's schema cannot be brought to the schema files by additive changes: ${messageOf(err)}`,
    )
  }
}

/**
 * Reads and checks the manifest and the file of an unpacked snapshot; throws SnapshotError.
 * With `schemaPaths` (the config's `[db] schema_paths`), also checks that the agent can start
 * on it with those files.
 */
export function verifySnapshot(
  path: string,
  clusterId: number,
  schemaPaths: readonly string[] = [],
): Manifest {
  let db: Database.Database
  try {
    db = new Database(path, { readonly: true })
    db.defaultSafeIntegers(true)
  } catch (err) {
    throw new SnapshotError(`the snapshot does not open as SQLite: ${messageOf(err)}`)
  }
  try {
    let check: string[]
    try {
      check = db.prepare('PRAGMA integrity_check').pluck().all().map(String)
    } catch (err) {
      throw new SnapshotError(`the snapshot is corrupt or truncated: ${messageOf(err)}`)
    }
    if (!(check.length === 1 && check[0] === 'ok')) {
      throw new SnapshotError(
        `the snapshot is corrupt or truncated (integrity_check: ${check.slice(0, 3).join('; ')})`,
      )
    }
    const hasManifest = db
      .prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?")
      .get(MANIFEST_TABLE)
    if (hasManifest === undefined) {
      throw new SnapshotError(`not a Patina snapshot: no ${MANIFEST_TABLE} manifest table`)
    }
    const entries = new Map(
      (
        db.prepare(`SELECT key, value FROM ${MANIFEST_TABLE}`).raw().all() as [string, string][]
      ).map(([k, v]) => [k, JSON.parse(v) as unknown]),
    )
    const format = entries.get('formatVersion')
    if (format !== SNAPSHOT_FORMAT_VERSION) {
      throw new SnapshotError(
        `snapshot format version ${String(format)} is not one this Patina reads ` +
          `(${SNAPSHOT_FORMAT_VERSION})`,
      )
    }
    const theirs = entries.get('clusterId')
    if (theirs !== clusterId) {
      throw new SnapshotError(
        `the snapshot is from cluster id ${String(theirs)}, this node's [gossip] cluster_id is ${clusterId}`,
      )
    }
    const found = inspect(db)
    if (found.problems.length > 0) {
      throw new SnapshotError(
        `the snapshot's Patina tables or triggers are not as Patina left them: ${found.problems.join('; ')}`,
      )
    }
    checkSchema(db, schemaPaths)
    return {
      formatVersion: format,
      clusterId: theirs,
      schemaHash: String(entries.get('schemaHash')),
      patinaVersion: String(entries.get('patinaVersion')),
      createdAt: String(entries.get('createdAt')),
      versions: (entries.get('versions') ?? {}) as VersionVector,
    }
  } finally {
    db.close()
  }
}

// ------------------------------------------------------------------ restore

export interface RestoreReport {
  /** The actor id the restored node has (hex). */
  readonly actorId: string
  /** True when it is a fresh id (`--as-new-actor`, or no old database). */
  readonly newActor: boolean
  readonly manifest: Manifest
  /**
   * Per origin, the version ranges the old database held and the snapshot does not: they come
   * back from peers if any peer holds them (see `ownMissing` for the node's own origin).
   */
  readonly lacking: Record<string, VersionRange[]>
  /** How many versions `lacking` counts. */
  readonly lackingCount: number
  /** The node's own versions the old database held and the snapshot lacks. */
  readonly ownMissing: VersionRange[]
}

interface OldState {
  readonly actorId: Uint8Array | null
  readonly versions: VersionVector
}

/**
 * Reads the old database's actor id and versions, and checkpoints it so that its -wal and -shm
 * are gone (the swap must not leave a WAL that belongs to another file). Throws when something
 * else still holds it open.
 */
function readOld(dbPath: string, lenient: boolean): OldState {
  if (!existsSync(dbPath)) {
    for (const ext of ['-wal', '-shm']) rmSync(dbPath + ext, { force: true })
    return { actorId: null, versions: {} }
  }
  let db: Database.Database
  try {
    db = new Database(dbPath)
    db.defaultSafeIntegers(true)
  } catch (err) {
    throw new SnapshotError(`cannot open the old database ${dbPath}: ${messageOf(err)}`)
  }
  let state: OldState
  try {
    const id = db.prepare('SELECT site_id FROM __patina_sites WHERE ordinal = 0').pluck().get() as
      Buffer | undefined
    state = { actorId: id === undefined ? null : new Uint8Array(id), versions: readVersions(db) }
    db.pragma('wal_checkpoint(TRUNCATE)')
  } catch (err) {
    db.close()
    if (lenient) {
      // --as-new-actor over an unreadable file: its -wal and -shm belong to it and go with it.
      for (const ext of ['-wal', '-shm']) rmSync(dbPath + ext, { force: true })
      return { actorId: null, versions: {} }
    }
    throw new SnapshotError(
      `cannot read the actor id of the old database ${dbPath}: ${messageOf(err)} ` +
        '(restore with --as-new-actor to give the node a fresh id)',
    )
  }
  db.close()
  if (existsSync(`${dbPath}-wal`)) {
    throw new SnapshotError(
      `${dbPath} is still open in another process (its -wal remains after a checkpoint): ` +
        'stop every process that has it open, then restore again',
    )
  }
  rmSync(`${dbPath}-shm`, { force: true })
  return state
}

function held(v: { head: number; gaps: readonly VersionRange[] } | undefined): VersionRange[] {
  if (v === undefined || v.head < 1) return []
  const out: VersionRange[] = []
  let s = 1
  for (const [gs, ge] of v.gaps) {
    if (gs > s) out.push([s, gs - 1])
    s = ge + 1
  }
  if (s <= v.head) out.push([s, v.head])
  return out
}

/** Ranges of `a` not in `b` (both sorted, disjoint). */
function minus(a: readonly VersionRange[], b: readonly VersionRange[]): VersionRange[] {
  const out: VersionRange[] = []
  for (const [s0, e0] of a) {
    let s = s0
    for (const [bs, be] of b) {
      if (be < s || bs > e0) continue
      if (bs > s) out.push([s, bs - 1])
      s = Math.max(s, be + 1)
    }
    if (s <= e0) out.push([s, e0])
  }
  return out
}

/**
 * Installs the snapshot `input` as the database at `dbPath` (the agent must be stopped). The
 * snapshot is unpacked and verified beside the database first; nothing in the data directory
 * changes when it is refused.
 */
export async function restoreSnapshot(
  input: string,
  dbPath: string,
  options: { clusterId: number; asNewActor?: boolean; schemaPaths?: readonly string[] },
): Promise<RestoreReport> {
  const temp = `${dbPath}.restore`
  // A re-run after a crash starts over: whatever an earlier run left half-done goes.
  for (const ext of ['', '-journal', '-wal', '-shm']) rmSync(temp + ext, { force: true })
  try {
    await unpackSnapshot(input, temp)
    const manifest = verifySnapshot(temp, options.clusterId, options.schemaPaths)
    const old = options.asNewActor === true ? null : peekOld(dbPath)
    const actorId = old?.actorId ?? new Uint8Array(randomBytes(ACTOR_ID_BYTES))
    const newActor = old?.actorId == null
    const hex = actorIdHex(actorId)
    const oldVersions = old?.versions ?? peekOld(dbPath, true)?.versions ?? {}
    const ownOld = oldVersions[hex]
    const ownSnap = manifest.versions[hex]
    const ownMissing = minus(held(ownOld), held(ownSnap))
    install(temp, actorId, ownOld?.head ?? 0, ownMissing)
    fsyncPath(temp)
    // The swap: checkpoint the old file (its -wal and -shm go), then one rename.
    readOld(dbPath, options.asNewActor === true)
    renameSync(temp, dbPath)
    fsyncPath(dirname(dbPath))
    const lacking: Record<string, VersionRange[]> = {}
    let lackingCount = 0
    for (const [origin, v] of Object.entries(oldVersions)) {
      const ranges = minus(held(v), held(manifest.versions[origin]))
      if (ranges.length === 0) continue
      lacking[origin] = ranges
      for (const [s, e] of ranges) lackingCount += e - s + 1
    }
    return { actorId: hex, newActor, manifest, lacking, lackingCount, ownMissing }
  } finally {
    for (const ext of ['', '-journal', '-wal', '-shm']) rmSync(temp + ext, { force: true })
  }
}

/** The old database's actor id and versions, read-only (null when there is none). */
function peekOld(dbPath: string, lenient = false): OldState | null {
  if (!existsSync(dbPath)) return null
  let db: Database.Database | undefined
  try {
    db = new Database(dbPath, { readonly: true })
    db.defaultSafeIntegers(true)
    const id = db.prepare('SELECT site_id FROM __patina_sites WHERE ordinal = 0').pluck().get() as
      Buffer | undefined
    return { actorId: id === undefined ? null : new Uint8Array(id), versions: readVersions(db) }
  } catch (err) {
    if (lenient) return null
    throw new SnapshotError(
      `cannot read the actor id of the old database ${dbPath}: ${messageOf(err)} ` +
        '(restore with --as-new-actor to give the node a fresh id)',
    )
  } finally {
    db?.close()
  }
}

/**
 * Gives the unpacked snapshot this node's identity: `actorId` at ordinal 0 (moved there if the
 * snapshot knows it as an origin), its head at least `oldHead` with `ownMissing` as gaps (no
 * version number is reused), and no manifest.
 */
function install(
  path: string,
  actorId: Uint8Array,
  oldHead: number,
  ownMissing: readonly VersionRange[],
): void {
  const db = new Database(path)
  try {
    db.defaultSafeIntegers(true)
    db.pragma('journal_mode = DELETE')
    allowBookkeepingWrites(db)
    db.transaction(() => {
      if (db.prepare('SELECT 1 FROM __patina_sites WHERE ordinal = 0').get() !== undefined) {
        moveSite(db, 0, nextOrdinal(db))
      }
      const known = db
        .prepare('SELECT ordinal FROM __patina_sites WHERE site_id = ?')
        .pluck()
        .get(Buffer.from(actorId)) as bigint | undefined
      if (known === undefined) {
        db.prepare('INSERT INTO __patina_sites (ordinal, site_id) VALUES (0, ?)').run(
          Buffer.from(actorId),
        )
      } else {
        moveSite(db, Number(known), 0)
      }
      const snapHead = Number(
        (db.prepare('SELECT head FROM __patina_heads WHERE site = 0').pluck().get() as
          bigint | undefined) ?? 0n,
      )
      if (oldHead > snapHead) {
        db.prepare(
          'INSERT INTO __patina_heads (site, head) VALUES (0, ?) ' +
            'ON CONFLICT (site) DO UPDATE SET head = excluded.head',
        ).run(oldHead)
        const addGap = db.prepare(
          'INSERT OR REPLACE INTO __patina_gaps (site, start_v, end_v) VALUES (0, ?, ?)',
        )
        for (const [s, e] of ownMissing) addGap.run(s, e)
        mergeGaps(db)
      }
      db.exec(`DROP TABLE ${MANIFEST_TABLE}`)
    })()
  } finally {
    db.close()
  }
}

/** Rewrites site 0's gaps sorted, disjoint and non-adjacent, as version-ranges.ts keeps them. */
function mergeGaps(db: Database.Database): void {
  const rows = db
    .prepare('SELECT start_v, end_v FROM __patina_gaps WHERE site = 0 ORDER BY start_v')
    .raw()
    .all() as [bigint, bigint][]
  const merged: [number, number][] = []
  for (const [s, e] of rows.map(([a, b]) => [Number(a), Number(b)] as const)) {
    const last = merged.at(-1)
    if (last !== undefined && s <= last[1] + 1) last[1] = Math.max(last[1], e)
    else merged.push([s, e])
  }
  db.exec('DELETE FROM __patina_gaps WHERE site = 0')
  const add = db.prepare('INSERT INTO __patina_gaps (site, start_v, end_v) VALUES (0, ?, ?)')
  for (const [s, e] of merged) add.run(s, e)
}
