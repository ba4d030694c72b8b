/**
 * The agent's configuration: Corrosion's TOML keys, validated, with every default filled in,
 * frozen. Keys Corrosion has and Patina does not implement yet are accepted and listed in one
 * warning; any other unknown key, or a bad value, is a ConfigError naming the key.
 */
import { readFileSync } from 'node:fs'
import { dirname, isAbsolute, join, resolve } from 'node:path'
import { parse as parseToml, TomlError } from 'smol-toml'
import { z } from 'zod'
import { BUFFER_CELLS_MAX } from '../crdt/replica.ts'
import { DEFAULT_REPLICATION, type ReplicationOptions } from '../replication/options.ts'
import {
  LAN_PROFILE,
  MIN_PACKET_BYTES,
  WAN_PROFILE,
  type SwimOptions,
} from '../membership/defaults.ts'
import {
  API_BODY_BYTES_MAX,
  API_CONCURRENT_QUERIES_MAX,
  API_INFLIGHT_TRANSACTIONS_MAX,
  API_QUERY_TIMEOUT_MS,
  API_STATEMENTS_MAX,
  DB_READER_THREADS,
  DEFAULT_API_ADDR,
  DEFAULT_CLUSTER_ID,
  DEFAULT_GOSSIP_ADDR,
  SUBS_BATCH_MS,
  SUBS_EVAL_TIMEOUT_MS,
  SUBS_FULL_EVAL_INTERVAL_MS,
  SUBS_HISTORY_MAX,
  SUBS_IDLE_TIMEOUT_MS,
  SUBS_LISTENER_LAG_MAX,
  SUBS_LISTENERS_MAX,
  SUBS_MAX,
  SUBS_PENDING_KEYS_MAX,
  SUBS_READER_THREADS,
} from './defaults.ts'

export class ConfigError extends Error {
  override readonly name = 'ConfigError'
  readonly code = 'CONFIG_INVALID'
}

export interface Config {
  /** Broadcast, apply and sync settings (`[gossip]` rate keys and `[perf]`). */
  readonly replication: ReplicationOptions & { readonly bufferCellsMax: number }
  readonly db: {
    readonly path: string
    readonly schemaPaths: readonly string[]
    readonly synchronous: 'normal' | 'full'
    readonly readerThreads: number
  }
  readonly api: {
    readonly addrs: readonly string[]
    readonly bearerToken: string | null
    readonly maxBodyBytes: number
    readonly maxInflightTransactions: number
    readonly maxConcurrentQueries: number
    readonly maxStatements: number
    readonly queryTimeoutMs: number
  }
  readonly gossip: {
    readonly addr: string
    readonly bootstrap: readonly string[]
    readonly plaintext: boolean
    /** u16; agents only talk to agents of the same cluster id. */
    readonly clusterId: number
    /** Membership timing profile: memberlist's LAN or WAN numbers. */
    readonly profile: 'lan' | 'wan'
    /** Every membership parameter: the profile's, with the `[gossip]` overrides applied. */
    readonly swim: SwimOptions
  }
  readonly subscriptions: {
    /** Directory of the subscriptions database (`[db] subscriptions_path`). */
    readonly path: string
    readonly maxSubscriptions: number
    readonly maxListeners: number
    readonly maxListenerLag: number
    readonly maxHistory: number
    readonly maxPendingKeys: number
    readonly idleTimeoutMs: number
    readonly evalTimeoutMs: number
    readonly readerThreads: number
    /** Accept queries that can only be maintained by re-running them whole. */
    readonly fullReevaluation: boolean
    readonly fullEvalIntervalMs: number
    readonly batchMs: number
  }
  readonly admin: { readonly path: string }
  readonly telemetry: { readonly prometheusAddr: string | null }
  readonly log: { readonly format: 'plaintext' | 'json'; readonly colors: boolean }
}

export interface LoadedConfig {
  readonly config: Config
  /** Corrosion keys present in the file that Patina accepts but does not implement yet. */
  readonly unimplemented: readonly string[]
}

/** Corrosion keys accepted (so a Corrosion config starts) but not implemented yet. */
const CORROSION_UNIMPLEMENTED = new Set([
  'db.cache_size_kib',
  'api.endpoint_name',
  'api.pg',
  'gossip.external_addr',
  'gossip.client_addr',
  'gossip.tls',
  'gossip.idle_timeout_secs',
  'gossip.max_mtu',
  'gossip.disable_gso',
  'gossip.member_id',
  'gossip.compression',
  'gossip.broadcast',
  'telemetry.open-telemetry',
  'perf.apply_channel_len',
  'perf.changes_channel_len',
  'perf.empties_channel_len',
  'perf.bcast_channel_len',
  'perf.clearbuf_channel_len',
  'perf.to_send_channel_len',
  'perf.notifications_channel_len',
  'perf.schedule_channel_len',
  'perf.foca_channel_len',
  'perf.apply_queue_timeout',
  'perf.apply_queue_step_base',
  'perf.apply_queue_batch_threshold_ratio',
  'perf.partial_retry_backoff',
  'perf.wal_threshold_mb',
  'perf.sql_tx_timeout',
  'consul',
  'reaper',
])

const hostPort = z.string().refine((s) => parseHostPort(s) !== null, {
  error: 'expected "host:port" (e.g. "127.0.0.1:8080" or "[::1]:8080")',
})

export function parseHostPort(addr: string): { host: string; port: number } | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(addr)
  if (m === null) return null
  const port = Number(m[3])
  if (port > 65_535) return null
  return { host: m[1] ?? m[2] ?? '', port }
}

const positiveInt = z.number().int().positive()
const nonNegativeInt = z.number().int().min(0)

/** Largest UDP payload over IPv4. */
const UDP_PAYLOAD_MAX = 65_507

/**
 * `[gossip]` keys overriding one membership parameter each (SwimOptions, in snake_case); absent
 * keys keep the profile's value. Ranges follow what the membership code asserts or relies on.
 */
const swimOverrides = {
  probe_interval_ms: positiveInt.optional(),
  probe_timeout_ms: positiveInt.optional(),
  indirect_checks: positiveInt.optional(),
  local_health_max: nonNegativeInt.optional(),
  nacks: z.boolean().optional(),
  buddy_system: z.boolean().optional(),
  suspicion_mult: positiveInt.optional(),
  suspicion_max_timeout_mult: positiveInt.optional(),
  retransmit_mult: positiveInt.optional(),
  gossip_interval_ms: positiveInt.optional(),
  gossip_nodes: positiveInt.optional(),
  gossip_to_the_dead_ms: nonNegativeInt.optional(),
  max_packet_bytes: z.number().int().min(MIN_PACKET_BYTES).max(UDP_PAYLOAD_MAX).optional(),
  push_pull_interval_ms: nonNegativeInt.optional(),
  push_pull_timeout_ms: positiveInt.optional(),
  push_pull_bytes_max: positiveInt.optional(),
  join_retry_base_ms: positiveInt.optional(),
  join_retry_max_ms: positiveInt.optional(),
  join_retry_jitter: z.number().min(0).max(1).optional(),
  reconnect_interval_ms: nonNegativeInt.optional(),
  down_notice_interval_ms: positiveInt.optional(),
  remove_down_after_ms: positiveInt.optional(),
  leave_linger_ms: nonNegativeInt.optional(),
  members_max: positiveInt.optional(),
  relays_max: positiveInt.optional(),
}

/**
 * `[perf]`: queue caps, apply batching and sync settings. Corrosion's names where Corrosion has
 * the setting (its backoffs are in seconds); Patina's own keys end in their unit.
 */
const perfSchema = z
  .strictObject({
    processing_queue_len: positiveInt.optional(),
    apply_queue_min_batch_size: positiveInt.optional(),
    apply_queue_max_batch_size: positiveInt.optional(),
    min_sync_backoff: z.number().positive().optional(),
    max_sync_backoff: z.number().positive().optional(),
    apply_queue_bytes_max: positiveInt.optional(),
    apply_target_ms: positiveInt.optional(),
    broadcast_queue_bytes_max: positiveInt.optional(),
    broadcast_direct_max: nonNegativeInt.optional(),
    broadcast_fanout: positiveInt.optional(),
    broadcast_transmissions: nonNegativeInt.optional(),
    chunk_bytes: z.number().int().min(1024).optional(),
    sync_sessions_max: positiveInt.optional(),
    sync_serve_sessions_max: positiveInt.optional(),
    sync_reply_bytes: z.number().int().min(1024).optional(),
    sync_rounds_max: positiveInt.optional(),
    sync_timeout_ms: positiveInt.optional(),
    buffered_cells_max: positiveInt.optional(),
  })
  .default({})

type PerfSection = z.infer<typeof perfSchema>

/** Replication settings: the defaults with the file's `[gossip]` rate keys and `[perf]`. */
function replicationOptions(
  gossip: {
    rate_limit_bytes_per_sec?: number | undefined
    rate_limit_burst_bytes?: number | undefined
  },
  p: PerfSection,
): ReplicationOptions & { bufferCellsMax: number } {
  const d = DEFAULT_REPLICATION
  return {
    ...d,
    rateBytesPerSec: gossip.rate_limit_bytes_per_sec ?? d.rateBytesPerSec,
    burstBytes: gossip.rate_limit_burst_bytes ?? d.burstBytes,
    broadcastQueueMax: p.processing_queue_len ?? d.broadcastQueueMax,
    applyQueueMax: p.processing_queue_len ?? d.applyQueueMax,
    applyBatchMin: p.apply_queue_min_batch_size ?? d.applyBatchMin,
    applyBatchMax: p.apply_queue_max_batch_size ?? d.applyBatchMax,
    syncIntervalMs: p.min_sync_backoff === undefined ? d.syncIntervalMs : p.min_sync_backoff * 1000,
    syncIntervalMaxMs:
      p.max_sync_backoff === undefined ? d.syncIntervalMaxMs : p.max_sync_backoff * 1000,
    applyQueueBytesMax: p.apply_queue_bytes_max ?? d.applyQueueBytesMax,
    applyTargetMs: p.apply_target_ms ?? d.applyTargetMs,
    broadcastQueueBytesMax: p.broadcast_queue_bytes_max ?? d.broadcastQueueBytesMax,
    broadcastDirectMax: p.broadcast_direct_max ?? d.broadcastDirectMax,
    fanout: p.broadcast_fanout ?? d.fanout,
    maxTransmissions: p.broadcast_transmissions ?? d.maxTransmissions,
    chunkBytes: p.chunk_bytes ?? d.chunkBytes,
    syncClientSessionsMax: p.sync_sessions_max ?? d.syncClientSessionsMax,
    syncServerSessionsMax: p.sync_serve_sessions_max ?? d.syncServerSessionsMax,
    syncReplyBytes: p.sync_reply_bytes ?? d.syncReplyBytes,
    syncRoundsMax: p.sync_rounds_max ?? d.syncRoundsMax,
    syncTimeoutMs: p.sync_timeout_ms ?? d.syncTimeoutMs,
    bufferCellsMax: p.buffered_cells_max ?? BUFFER_CELLS_MAX,
  }
}

const schema = z.strictObject({
  db: z.strictObject({
    path: z.string().min(1),
    schema_paths: z.array(z.string().min(1)).default([]),
    synchronous: z.enum(['normal', 'full']).default('normal'),
    reader_threads: z.number().int().min(1).max(64).default(DB_READER_THREADS),
    subscriptions_path: z.string().min(1).optional(),
  }),
  api: z
    .strictObject({
      addr: z.union([hostPort, z.array(hostPort).min(1)]).default(DEFAULT_API_ADDR),
      authz: z.strictObject({ 'bearer-token': z.string().min(1).optional() }).optional(),
      max_body_bytes: positiveInt.default(API_BODY_BYTES_MAX),
      max_inflight_transactions: positiveInt.default(API_INFLIGHT_TRANSACTIONS_MAX),
      max_concurrent_queries: positiveInt.default(API_CONCURRENT_QUERIES_MAX),
      max_statements: positiveInt.default(API_STATEMENTS_MAX),
      query_timeout_ms: z.number().int().min(0).default(API_QUERY_TIMEOUT_MS),
    })
    .default({
      addr: DEFAULT_API_ADDR,
      max_body_bytes: API_BODY_BYTES_MAX,
      max_inflight_transactions: API_INFLIGHT_TRANSACTIONS_MAX,
      max_concurrent_queries: API_CONCURRENT_QUERIES_MAX,
      max_statements: API_STATEMENTS_MAX,
      query_timeout_ms: API_QUERY_TIMEOUT_MS,
    }),
  gossip: z
    .strictObject({
      addr: hostPort.default(DEFAULT_GOSSIP_ADDR),
      bootstrap: z.array(hostPort).default([]),
      plaintext: z.boolean().default(false),
      cluster_id: z.number().int().min(0).max(0xffff).default(DEFAULT_CLUSTER_ID),
      profile: z.enum(['lan', 'wan']).default('lan'),
      rate_limit_bytes_per_sec: positiveInt.optional(),
      rate_limit_burst_bytes: positiveInt.optional(),
      ...swimOverrides,
    })
    .default({
      addr: DEFAULT_GOSSIP_ADDR,
      bootstrap: [],
      plaintext: false,
      cluster_id: DEFAULT_CLUSTER_ID,
      profile: 'lan',
    }),
  subscriptions: z
    .strictObject({
      max_subscriptions: positiveInt.default(SUBS_MAX),
      max_listeners: positiveInt.default(SUBS_LISTENERS_MAX),
      max_listener_lag: positiveInt.default(SUBS_LISTENER_LAG_MAX),
      max_history: positiveInt.default(SUBS_HISTORY_MAX),
      max_pending_keys: positiveInt.default(SUBS_PENDING_KEYS_MAX),
      idle_timeout_ms: nonNegativeInt.default(SUBS_IDLE_TIMEOUT_MS),
      eval_timeout_ms: nonNegativeInt.default(SUBS_EVAL_TIMEOUT_MS),
      reader_threads: z.number().int().min(1).max(64).default(SUBS_READER_THREADS),
      full_reevaluation: z.boolean().default(true),
      full_eval_interval_ms: nonNegativeInt.default(SUBS_FULL_EVAL_INTERVAL_MS),
      batch_ms: nonNegativeInt.default(SUBS_BATCH_MS),
    })
    .default({
      max_subscriptions: SUBS_MAX,
      max_listeners: SUBS_LISTENERS_MAX,
      max_listener_lag: SUBS_LISTENER_LAG_MAX,
      max_history: SUBS_HISTORY_MAX,
      max_pending_keys: SUBS_PENDING_KEYS_MAX,
      idle_timeout_ms: SUBS_IDLE_TIMEOUT_MS,
      eval_timeout_ms: SUBS_EVAL_TIMEOUT_MS,
      reader_threads: SUBS_READER_THREADS,
      full_reevaluation: true,
      full_eval_interval_ms: SUBS_FULL_EVAL_INTERVAL_MS,
      batch_ms: SUBS_BATCH_MS,
    }),
  perf: perfSchema,
  admin: z.strictObject({ path: z.string().min(1).optional() }).optional(),
  telemetry: z
    .strictObject({ prometheus: z.strictObject({ addr: hostPort }).optional() })
    .optional(),
  log: z
    .strictObject({
      format: z.enum(['plaintext', 'json']).default('json'),
      colors: z.boolean().default(false),
    })
    .default({ format: 'json', colors: false }),
})

type Table = Record<string, unknown>

function isTable(v: unknown): v is Table {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date)
}

/** Removes the accepted-but-unimplemented Corrosion keys, returning their dotted names. */
function stripUnimplemented(doc: Table, prefix = ''): string[] {
  const found: string[] = []
  for (const [key, value] of Object.entries(doc)) {
    const path = prefix === '' ? key : `${prefix}.${key}`
    if (CORROSION_UNIMPLEMENTED.has(path)) {
      found.push(path)
      // eslint-disable-next-line @typescript-eslint/no-dynamic-delete -- keys come from the file
      delete doc[key]
    } else if (isTable(value)) {
      found.push(...stripUnimplemented(value, path))
    }
  }
  return found
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const key = issue.path.map(String).join('.')
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.map((k) => (key === '' ? k : `${key}.${k}`))
    return `unknown config key${keys.length > 1 ? 's' : ''} ${keys.map((k) => `"${k}"`).join(', ')}`
  }
  if (issue.code === 'invalid_type' && issue.message.endsWith('received undefined')) {
    return `config key "${key}" is required`
  }
  return `config key "${key}": ${issue.message}`
}

/**
 * Parses and validates TOML text. Relative paths are resolved against `baseDir` (the config
 * file's directory).
 */
export function parseConfig(text: string, baseDir: string, source = 'config'): LoadedConfig {
  let doc: unknown
  try {
    doc = parseToml(text)
  } catch (err) {
    const where = err instanceof TomlError ? ` (line ${err.line}, column ${err.column})` : ''
    const message = err instanceof Error ? err.message.split('\n')[0] : String(err)
    throw new ConfigError(`${source}: invalid TOML${where}: ${message ?? ''}`, { cause: err })
  }
  if (!isTable(doc)) throw new ConfigError(`${source}: expected a TOML document`)
  const unimplemented = stripUnimplemented(doc)
  const result = schema.safeParse(doc)
  if (!result.success) {
    const issue = result.error.issues[0]
    throw new ConfigError(
      `${source}: ${issue === undefined ? 'invalid config' : describeIssue(issue)}`,
    )
  }
  const c = result.data
  const swim = swimOptions(c.gossip)
  if (swim.probeTimeoutMs >= swim.probeIntervalMs) {
    throw new ConfigError(
      `${source}: config key "gossip.probe_timeout_ms": must be less than probe_interval_ms ` +
        `(${swim.probeTimeoutMs} >= ${swim.probeIntervalMs})`,
    )
  }
  if (swim.joinRetryBaseMs > swim.joinRetryMaxMs) {
    throw new ConfigError(
      `${source}: config key "gossip.join_retry_base_ms": must not exceed join_retry_max_ms ` +
        `(${swim.joinRetryBaseMs} > ${swim.joinRetryMaxMs})`,
    )
  }
  const replication = replicationOptions(c.gossip, c.perf)
  // Pairs of keys where the first must not exceed the second, in the file's own units.
  const backoff = (ms: number): number => ms / 1000
  const order: [string, number, string, number][] = [
    [
      'perf.min_sync_backoff',
      backoff(replication.syncIntervalMs),
      'max_sync_backoff',
      backoff(replication.syncIntervalMaxMs),
    ],
    [
      'perf.apply_queue_min_batch_size',
      replication.applyBatchMin,
      'apply_queue_max_batch_size',
      replication.applyBatchMax,
    ],
    ['perf.chunk_bytes', replication.chunkBytes, 'sync_reply_bytes', replication.syncReplyBytes],
  ]
  for (const [key, low, other, high] of order) {
    if (low > high) {
      throw new ConfigError(
        `${source}: config key "${key}": must not exceed ${other} (${low} > ${high})`,
      )
    }
  }
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(baseDir, p))
  const dbPath = abs(c.db.path)
  const config: Config = {
    db: {
      path: dbPath,
      schemaPaths: c.db.schema_paths.map(abs),
      synchronous: c.db.synchronous,
      readerThreads: c.db.reader_threads,
    },
    api: {
      addrs: Array.isArray(c.api.addr) ? c.api.addr : [c.api.addr],
      bearerToken: c.api.authz?.['bearer-token'] ?? null,
      maxBodyBytes: c.api.max_body_bytes,
      maxInflightTransactions: c.api.max_inflight_transactions,
      maxConcurrentQueries: c.api.max_concurrent_queries,
      maxStatements: c.api.max_statements,
      queryTimeoutMs: c.api.query_timeout_ms,
    },
    replication,
    gossip: {
      addr: c.gossip.addr,
      bootstrap: c.gossip.bootstrap,
      plaintext: c.gossip.plaintext,
      clusterId: c.gossip.cluster_id,
      profile: c.gossip.profile,
      swim,
    },
    subscriptions: {
      path: abs(c.db.subscriptions_path ?? join(dirname(dbPath), 'subscriptions')),
      maxSubscriptions: c.subscriptions.max_subscriptions,
      maxListeners: c.subscriptions.max_listeners,
      maxListenerLag: c.subscriptions.max_listener_lag,
      maxHistory: c.subscriptions.max_history,
      maxPendingKeys: c.subscriptions.max_pending_keys,
      idleTimeoutMs: c.subscriptions.idle_timeout_ms,
      evalTimeoutMs: c.subscriptions.eval_timeout_ms,
      readerThreads: c.subscriptions.reader_threads,
      fullReevaluation: c.subscriptions.full_reevaluation,
      fullEvalIntervalMs: c.subscriptions.full_eval_interval_ms,
      batchMs: c.subscriptions.batch_ms,
    },
    admin: { path: abs(c.admin?.path ?? join(dirname(dbPath), 'admin.sock')) },
    telemetry: { prometheusAddr: c.telemetry?.prometheus?.addr ?? null },
    log: { format: c.log.format, colors: c.log.colors },
  }
  return { config: deepFreeze(config), unimplemented }
}

type GossipSection = z.infer<typeof schema>['gossip']

/** The profile's membership parameters with the `[gossip]` overrides applied. */
function swimOptions(g: GossipSection): SwimOptions {
  const p = g.profile === 'wan' ? WAN_PROFILE : LAN_PROFILE
  return {
    probeIntervalMs: g.probe_interval_ms ?? p.probeIntervalMs,
    probeTimeoutMs: g.probe_timeout_ms ?? p.probeTimeoutMs,
    indirectChecks: g.indirect_checks ?? p.indirectChecks,
    localHealthMax: g.local_health_max ?? p.localHealthMax,
    nacks: g.nacks ?? p.nacks,
    buddySystem: g.buddy_system ?? p.buddySystem,
    suspicionMult: g.suspicion_mult ?? p.suspicionMult,
    suspicionMaxTimeoutMult: g.suspicion_max_timeout_mult ?? p.suspicionMaxTimeoutMult,
    retransmitMult: g.retransmit_mult ?? p.retransmitMult,
    gossipIntervalMs: g.gossip_interval_ms ?? p.gossipIntervalMs,
    gossipNodes: g.gossip_nodes ?? p.gossipNodes,
    gossipToTheDeadMs: g.gossip_to_the_dead_ms ?? p.gossipToTheDeadMs,
    maxPacketBytes: g.max_packet_bytes ?? p.maxPacketBytes,
    pushPullIntervalMs: g.push_pull_interval_ms ?? p.pushPullIntervalMs,
    pushPullTimeoutMs: g.push_pull_timeout_ms ?? p.pushPullTimeoutMs,
    pushPullBytesMax: g.push_pull_bytes_max ?? p.pushPullBytesMax,
    joinRetryBaseMs: g.join_retry_base_ms ?? p.joinRetryBaseMs,
    joinRetryMaxMs: g.join_retry_max_ms ?? p.joinRetryMaxMs,
    joinRetryJitter: g.join_retry_jitter ?? p.joinRetryJitter,
    reconnectIntervalMs: g.reconnect_interval_ms ?? p.reconnectIntervalMs,
    downNoticeIntervalMs: g.down_notice_interval_ms ?? p.downNoticeIntervalMs,
    removeDownAfterMs: g.remove_down_after_ms ?? p.removeDownAfterMs,
    leaveLingerMs: g.leave_linger_ms ?? p.leaveLingerMs,
    membersMax: g.members_max ?? p.membersMax,
    relaysMax: g.relays_max ?? p.relaysMax,
  }
}

export function loadConfig(path: string): LoadedConfig {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`, {
      cause: err,
    })
  }
  return parseConfig(text, dirname(resolve(path)), path)
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v)
    Object.freeze(value)
  }
  return value
}
