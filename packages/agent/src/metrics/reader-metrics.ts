/**
 * Prometheus metrics of the reader pools (query/reader-pool.ts), read from `stats()` at scrape
 * time, labelled by pool (`queries`: /v1/queries and table_stats; `subscriptions`):
 *
 *   patina_reader_rows_too_large_total{pool}  rows refused for [api] max_row_bytes
 *   patina_reader_recycled_total{pool}        readers replaced for their size after a query
 *   patina_reader_replaced_total{pool}        readers replaced for any reason (stuck, crashed,
 *                                             size)
 */
import { Counter, type Registry } from 'prom-client'
import type { ReaderPoolStats } from '../query/reader-pool.ts'

export interface ReaderStatsSource {
  stats(): ReaderPoolStats
}

export function registerReaderMetrics(
  registry: Registry,
  pools: Readonly<Record<string, ReaderStatsSource>>,
): void {
  const counter = (name: string, help: string, read: (s: ReaderPoolStats) => number): void => {
    new Counter({
      name,
      help,
      labelNames: ['pool'] as const,
      registers: [registry],
      collect() {
        this.reset()
        for (const [pool, source] of Object.entries(pools)) this.inc({ pool }, read(source.stats()))
      },
    })
  }
  counter(
    'patina_reader_rows_too_large_total',
    'Rows refused in a reader process for [api] max_row_bytes, by pool',
    (s) => s.rowsTooLarge,
  )
  counter(
    'patina_reader_recycled_total',
    'Reader processes replaced because they stayed large after a query, by pool',
    (s) => s.recycled,
  )
  counter(
    'patina_reader_replaced_total',
    'Reader processes killed and replaced (stuck cancel, crash, size), by pool',
    (s) => s.replaced,
  )
}
