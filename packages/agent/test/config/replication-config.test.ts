/**
 * Goal: the replication settings (`[gossip]` rate cap, `[perf]`) reach the parsed config, with
 * Corrosion's units where Corrosion has the key; bad values and inconsistent pairs fail naming
 * the key; Corrosion's `[perf]` keys Patina does not implement are accepted with a warning.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ConfigError, parseConfig } from '../../src/config/load-config.ts'
import { DEFAULT_REPLICATION } from '../../src/replication/options.ts'

const BASE_DIR = '/tmp/patina-config-test'

function toml(...lines: string[]): string {
  return ['[db]', 'path = "state.db"', ...lines, ''].join('\n')
}

function rejects(text: string, pattern: RegExp): void {
  assert.throws(
    () => parseConfig(text, BASE_DIR),
    (err: unknown) => err instanceof ConfigError && pattern.test(err.message),
    `expected a ConfigError matching ${String(pattern)}`,
  )
}

describe('config - replication settings', () => {
  it('config - defaults when absent', () => {
    const { config } = parseConfig(toml(), BASE_DIR)
    assert.equal(config.replication.rateBytesPerSec, DEFAULT_REPLICATION.rateBytesPerSec)
    assert.equal(config.replication.syncIntervalMs, DEFAULT_REPLICATION.syncIntervalMs)
  })

  it('config - [gossip] rate cap and [perf] keys reach the config, backoffs in seconds', () => {
    const { config, unimplemented } = parseConfig(
      toml(
        '[gossip]',
        'rate_limit_bytes_per_sec = 1048576',
        '[perf]',
        'processing_queue_len = 500',
        'min_sync_backoff = 0.5',
        'max_sync_backoff = 4',
        'apply_queue_bytes_max = 1000000',
        'broadcast_direct_max = 0',
        'sql_tx_timeout = 60',
      ),
      BASE_DIR,
    )
    const r = config.replication
    assert.equal(r.rateBytesPerSec, 1_048_576)
    assert.equal(r.broadcastQueueMax, 500)
    assert.equal(r.applyQueueMax, 500)
    assert.equal(r.syncIntervalMs, 500)
    assert.equal(r.syncIntervalMaxMs, 4000)
    assert.equal(r.applyQueueBytesMax, 1_000_000)
    assert.equal(r.broadcastDirectMax, 0)
    assert.deepEqual(unimplemented, [])
    // Corrosion's sql_tx_timeout is in seconds; it bounds local write transactions.
    assert.equal(config.write.txTimeoutMs, 60_000)
    assert.equal(config.write.maxCellBytes, 4 * 1024 * 1024)
  })

  it('config - bad values and inconsistent pairs name the key, in the file units', () => {
    rejects(toml('[gossip]', 'rate_limit_bytes_per_sec = 0'), /"gossip\.rate_limit_bytes_per_sec"/)
    rejects(toml('[perf]', 'chunk_bytes = 10'), /"perf\.chunk_bytes"/)
    rejects(toml('[perf]', 'nope = 1'), /unknown config key "perf\.nope"/)
    rejects(
      toml('[perf]', 'min_sync_backoff = 5', 'max_sync_backoff = 1'),
      /"perf\.min_sync_backoff": must not exceed max_sync_backoff \(5 > 1\)/,
    )
    rejects(
      toml('[perf]', 'chunk_bytes = 2000000'),
      /"perf\.chunk_bytes": must not exceed sync_reply_bytes/,
    )
  })
})
