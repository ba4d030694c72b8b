/**
 * Benchmark 4, metadata overhead: the main database file of the 1,000,000-row replicated table
 * (after `wal_checkpoint(TRUNCATE)`) against the plain table with the same rows, with a
 * per-table breakdown from dbstat. The fixture's bulk fill rate is reported alongside.
 */
import {
  fmtInt,
  fmtMB,
  fmtRatio,
  fmtStats,
  openPlain,
  pairedRatios,
  stats,
  type BenchContext,
  type BenchModule,
  type BenchReport,
} from './lib/common.ts'
import { FILL_CHUNK } from './lib/fixture.ts'

function breakdown(path: string): { name: string; bytes: number }[] {
  const db = openPlain(path)
  try {
    const rows = db
      .prepare('SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC')
      .raw()
      .all() as [string, bigint][]
    return rows.map(([name, bytes]) => ({ name, bytes: Number(bytes) }))
  } finally {
    db.close()
  }
}

function run(ctx: BenchContext): BenchReport {
  const f = ctx.fixture()
  const plainBytes = stats(f.plainBytes)
  const engineBytes = stats(f.engineBytes)
  const ratio = pairedRatios(f.engineBytes, f.plainBytes)
  const perRow = (b: number): string => (b / f.rows).toFixed(1)
  const overheadPerRow = (engineBytes.median - plainBytes.median) / f.rows
  const plainParts = breakdown(f.plainPath)
  const engineParts = breakdown(f.enginePath)
  const plainTotal = plainParts.reduce((n, p) => n + p.bytes, 0)
  const fillPlain = f.plainFillSeconds.map((s) => f.rows / s)
  const fillEngine = f.engineFillSeconds.map((s) => f.rows / s)
  const fillRatio = pairedRatios(fillEngine, fillPlain)
  const engineFile = f.engineBytes.at(-1) ?? engineBytes.median
  const sameSizes = plainBytes.min === plainBytes.max && engineBytes.min === engineBytes.max
  return {
    tables: [
      {
        title: `Database file size, ${fmtInt(f.rows)} rows (main file after wal_checkpoint(TRUNCATE))`,
        headers: ['', 'plain', 'engine', 'engine/plain', 'bytes/row plain', 'bytes/row engine'],
        rows: [
          [
            'file size',
            fmtMB(plainBytes.median),
            fmtMB(engineBytes.median),
            fmtRatio(ratio),
            perRow(plainBytes.median),
            perRow(engineBytes.median),
          ],
        ],
        notes: [
          `metadata: ${overheadPerRow.toFixed(1)} bytes per row; MB = 10^6 bytes.`,
          sameSizes
            ? `sizes identical in all ${f.plainBytes.length} builds`
            : `sizes per build: plain ${f.plainBytes.join(', ')}; engine ${f.engineBytes.join(', ')}`,
        ],
      },
      {
        title: 'Where the bytes are (dbstat, pages of each b-tree)',
        headers: ['b-tree', 'bytes', 'share of engine file', 'x plain file', 'bytes/row'],
        rows: engineParts.map((p) => [
          p.name,
          fmtMB(p.bytes),
          `${((p.bytes / engineFile) * 100).toFixed(1)}%`,
          (p.bytes / plainTotal).toFixed(2),
          perRow(p.bytes),
        ]),
      },
      {
        title: `Bulk fill of the fixture (INSERT … SELECT, ${fmtInt(FILL_CHUNK)} rows per transaction, rows/s)`,
        headers: ['', 'plain rows/s', 'engine rows/s', 'engine/plain'],
        rows: [
          [
            'bulk INSERT … SELECT',
            fmtStats(stats(fillPlain)),
            fmtStats(stats(fillEngine)),
            fmtRatio(fillRatio),
          ],
        ],
      },
    ],
    summary: [
      {
        metric: 'file size engine/plain',
        value: `${ratio.median.toFixed(2)} (${fmtMB(engineBytes.median)} vs ${fmtMB(plainBytes.median)})`,
      },
      { metric: 'bulk fill engine/plain', value: fillRatio.median.toFixed(2) },
    ],
    data: {
      rows: f.rows,
      plainBytes,
      engineBytes,
      ratio,
      metadataBytesPerRow: overheadPerRow,
      breakdown: { plain: plainParts, engine: engineParts },
      bulkFill: {
        plainSeconds: f.plainFillSeconds,
        engineSeconds: f.engineFillSeconds,
        plainRowsPerSecond: stats(fillPlain),
        engineRowsPerSecond: stats(fillEngine),
        ratio: fillRatio,
      },
    },
  }
}

export const engineSize: BenchModule = {
  name: 'engine-size',
  title: 'Metadata overhead: file size of a 1M-row replicated table vs plain',
  run,
}
