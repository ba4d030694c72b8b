/**
 * Shared pieces of the benchmarks: the module interface, sizes (full or BENCH_QUICK), statistics
 * over repeats, aligned text tables, plain baseline connections and temp-file handling.
 */
import { closeSync, copyFileSync, existsSync, fsyncSync, openSync, rmSync, statSync } from 'node:fs'
import type Database from 'better-sqlite3'
import { openDb } from '../../packages/agent/src/store/open-db.ts'

/** `BENCH_QUICK=1`: every size divided by 10, for a smoke run. */
export const QUICK = process.env['BENCH_QUICK'] === '1'
/** Every configuration runs this many times; tables show the median and [min-max]. */
export const REPEATS = 3

/** A full-run size, or a tenth of it in quick mode. */
export function scaled(full: number): number {
  return QUICK ? Math.max(1, Math.round(full / 10)) : full
}

// ------------------------------------------------------------------------------ module interface

export interface Machine {
  readonly cpu: string
  readonly cores: number
  readonly totalMemoryBytes: number
  readonly os: string
  readonly node: string
  readonly betterSqlite3: string
  readonly sqlite: string
  readonly tmpdir: string
  /** sha256 (first 12 hex digits) of the engine sources measured: packages/agent/src. */
  readonly engineSources: string
}

/** A 1M-row replicated table and the plain table with the same rows, as closed database files. */
export interface BigFixture {
  readonly rows: number
  readonly enginePath: string
  readonly plainPath: string
  /** Seconds per build of the fixture, engine and plain. */
  readonly engineFillSeconds: readonly number[]
  readonly plainFillSeconds: readonly number[]
  /** Main-file sizes after `wal_checkpoint(TRUNCATE)`, per build. */
  readonly engineBytes: readonly number[]
  readonly plainBytes: readonly number[]
}

export interface BenchContext {
  /** Temp directory of this run, removed at the end. */
  readonly dir: string
  readonly machine: Machine
  /** Builds the 1M-row fixture on first use, then returns the same files. */
  fixture(): BigFixture
  /** A progress line (goes to stderr so that stdout holds only the results). */
  progress(line: string): void
}

export interface ResultTable {
  readonly title: string
  readonly headers: readonly string[]
  readonly rows: readonly (readonly string[])[]
  readonly notes?: readonly string[]
}

export interface SummaryLine {
  readonly metric: string
  readonly value: string
  /** The target stated by the issue, if any. */
  readonly goal?: string
  readonly met?: boolean
}

export interface BenchReport {
  readonly tables: readonly ResultTable[]
  readonly summary: readonly SummaryLine[]
  /** Everything measured, with the raw samples, for bench/results/<name>.json. */
  readonly data: Record<string, unknown>
}

export interface BenchModule {
  /** Short name, matched by the filter argument and used for bench/results/<name>.json. */
  readonly name: string
  readonly title: string
  run(ctx: BenchContext): BenchReport | Promise<BenchReport>
}

// ------------------------------------------------------------------------------ statistics

export interface Stats {
  readonly median: number
  readonly min: number
  readonly max: number
  readonly samples: readonly number[]
}

export function stats(samples: readonly number[]): Stats {
  if (samples.length === 0) throw new Error('no samples')
  const sorted = [...samples].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  const median =
    sorted.length % 2 === 1
      ? (sorted[mid] as number)
      : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
  return { median, min: sorted[0] as number, max: sorted.at(-1) as number, samples }
}

/** Per-repeat ratios a[i] / b[i] of paired samples (each pair ran back to back). */
export function pairedRatios(a: readonly number[], b: readonly number[]): Stats {
  if (a.length !== b.length) throw new Error('unpaired samples')
  return stats(a.map((x, i) => x / (b[i] as number)))
}

/** Milliseconds taken by `fn`. */
export function timeMs(fn: () => void): number {
  return timed(fn)[1]
}

/** The result of `fn` and the milliseconds it took. */
export function timed<T>(fn: () => T): [result: T, ms: number] {
  const start = process.hrtime.bigint()
  const result = fn()
  return [result, Number(process.hrtime.bigint() - start) / 1e6]
}

// ------------------------------------------------------------------------------ formatting

const intFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 })

export function fmtInt(n: number): string {
  return intFormat.format(Math.round(n))
}

export function fmtFixed(n: number, digits: number): string {
  return n.toFixed(digits)
}

/** `median [min-max]` with the given number formatter. */
export function fmtStats(s: Stats, fmt: (n: number) => string = fmtInt): string {
  return `${fmt(s.median)} [${fmt(s.min)}-${fmt(s.max)}]`
}

export const fmtRatio = (s: Stats): string => fmtStats(s, (n) => n.toFixed(2))
export const fmtMs = (s: Stats): string => fmtStats(s, (n) => n.toFixed(n < 10 ? 2 : 1))
export const fmtMB = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`

/** An aligned text table: first column left-aligned, the others right-aligned. */
export function renderTable(t: ResultTable): string {
  const all = [t.headers, ...t.rows]
  const widths = t.headers.map((_, c) => Math.max(...all.map((r) => (r[c] ?? '').length)))
  const line = (r: readonly string[]): string =>
    r
      .map((cell, c) => {
        const w = widths[c] ?? 0
        return c === 0 ? cell.padEnd(w) : cell.padStart(w)
      })
      .join('  ')
      .trimEnd()
  const rule = widths.map((w) => '-'.repeat(w)).join('  ')
  const out = [t.title, '', line(t.headers), rule, ...t.rows.map(line)]
  for (const note of t.notes ?? []) out.push(`  ${note}`)
  return out.join('\n')
}

// ------------------------------------------------------------------------------ databases

/**
 * A plain better-sqlite3 connection for baselines, opened by the same function as the
 * engine's writer connection: WAL, synchronous NORMAL, cache_size -65536, safe integers.
 */
export function openPlain(path: string): Database.Database {
  return openDb(path)
}

/** The pragmas that matter for a fair comparison, as the connection reports them. */
export function pragmas(db: Database.Database): Record<string, string> {
  const one = (name: string): string => String(db.pragma(name, { simple: true }))
  return {
    journal_mode: one('journal_mode'),
    synchronous: one('synchronous'),
    cache_size: one('cache_size'),
  }
}

/** Moves everything from the WAL into the main file and truncates the WAL. */
export function checkpoint(db: Database.Database): void {
  db.pragma('wal_checkpoint(TRUNCATE)')
}

export function fileSize(path: string): number {
  return statSync(path).size
}

/**
 * Copies a closed, checkpointed database file and flushes the copy to disk, so that the first
 * commit on the copy does not pay for writing it back (ext4 flushes dirty data on a journal
 * commit, which the first WAL header sync triggers).
 */
export function copyDb(from: string, to: string): void {
  copyFileSync(from, to)
  const fd = openSync(to, 'r+')
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

/**
 * Commits one tiny write (user_version set to its own value) so that the WAL exists and its
 * header is synced before anything is timed, as on a connection that has been running.
 */
export function warmWal(db: Database.Database): void {
  const version = db.pragma('user_version', { simple: true }) as bigint
  db.pragma(`user_version = ${version}`)
}

/** Removes a database file with its -wal and -shm files. */
export function removeDb(path: string): void {
  for (const p of [path, `${path}-wal`, `${path}-shm`]) {
    if (existsSync(p)) rmSync(p)
  }
}

// ------------------------------------------------------------------------------ test data

/** Site ids (16 bytes) with a recognisable first byte. */
export function actorId(byte: number): Uint8Array {
  const id = new Uint8Array(16)
  id[0] = byte
  id[15] = 1
  return id
}

/** A small seeded PRNG (mulberry32): the same ids in every run. */
export function prng(seed: number): () => number {
  let s = seed | 0
  return () => {
    s = (s + 0x6d2b79f5) | 0
    let t = Math.imul(s ^ (s >>> 15), 1 | s)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** `count` distinct integers from 1..max, in random order. */
export function distinctIds(count: number, max: number, seed: number): number[] {
  if (count > max) throw new Error('more ids than the range holds')
  const random = prng(seed)
  const seen = new Set<number>()
  const out: number[] = []
  while (out.length < count) {
    const id = Math.floor(random() * max) + 1
    if (!seen.has(id)) {
      seen.add(id)
      out.push(id)
    }
  }
  return out
}
