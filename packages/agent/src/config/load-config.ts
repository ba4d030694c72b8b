/**
 * The agent's configuration: Corrosion's TOML keys, validated, with every default filled in,
 * frozen. Keys Corrosion has and Patina does not implement yet are accepted and listed in one
 * warning; any other unknown key, or a bad value, is a ConfigError naming the key.
 *
 * Each key is written once, in camelCase, with its validation and default: the file's key is its
 * snake_case form, and `Config` is the schema's output type.
 */
import { readFileSync } from 'node:fs'
import { dirname, isAbsolute, join, resolve } from 'node:path'
import { parse as parseToml, TomlError } from 'smol-toml'
import { z } from 'zod'
import { deepFreeze, optional, pick, section, type DeepReadonly } from './schema-helpers.ts'
import {
  LAN_PROFILE,
  MIN_PACKET_BYTES,
  WAN_PROFILE,
  type SwimOptions,
} from '../membership/defaults.ts'
import {
  API_BODY_BYTES_MAX,
  API_RESPONSE_BUFFER_BYTES_MAX,
  API_CONCURRENT_STREAMS_MAX,
  API_ROW_BYTES_MAX,
  CELL_BYTES_LIMIT,
  CELL_BYTES_MAX,
  SQL_TX_TIMEOUT_MS,
  API_CONCURRENT_QUERIES_MAX,
  API_HEADERS_TIMEOUT_MS,
  API_INFLIGHT_TRANSACTIONS_MAX,
  API_KEEP_ALIVE_TIMEOUT_MS,
  API_QUERY_TIMEOUT_MS,
  API_REQUEST_TIMEOUT_MS,
  API_STATEMENTS_MAX,
  BUFFER_CELLS_MAX,
  CHUNK_BYTES_MIN,
  CLUSTER_ID_MAX,
  DB_READER_THREADS,
  DEFAULT_API_ADDR,
  DEFAULT_CLUSTER_ID,
  DEFAULT_GOSSIP_ADDR,
  DEFAULT_REPLICATION,
  PORT_MAX,
  READER_THREADS_MAX,
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
  UDP_PAYLOAD_BYTES_MAX,
  type ReplicationOptions,
} from './defaults.ts'

export class ConfigError extends Error {
  override readonly name = 'ConfigError'
  readonly code = 'CONFIG_INVALID'
}

/** The parsed configuration (see `configSchema`): camelCase, defaults filled in, frozen. */
export type Config = DeepReadonly<z.output<ReturnType<typeof configSchema>>>

/** Replication settings: `[gossip]` rate keys and `[perf]` over DEFAULT_REPLICATION. */
export type ReplicationConfig = ReplicationOptions & { readonly bufferCellsMax: number }

export interface LoadedConfig {
  readonly config: Config
  /** Corrosion keys present in the file that Patina accepts but does not implement yet. */
  readonly unimplemented: readonly string[]
  /** Valid settings that are probably mistakes, to log at start (the agent starts anyway). */
  readonly warnings: readonly ConfigWarning[]
}

export interface ConfigWarning {
  /** The dotted key, as in the file: `db.schema_paths`. */
  readonly key: string
  readonly message: string
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
  'consul',
  'reaper',
])

const HOST_PORT = 'expected "host:port" (a string such as "127.0.0.1:8080" or "[::1]:8080")'
const hostPort = z
  .string({ error: HOST_PORT })
  .refine((s) => parseHostPort(s) !== null, { error: HOST_PORT })

export function parseHostPort(addr: string): { host: string; port: number } | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(addr)
  if (m === null) return null
  const port = Number(m[3])
  if (port > PORT_MAX) return null
  return { host: m[1] ?? m[2] ?? '', port }
}

const positiveInt = z.number().int().positive()
const nonNegativeInt = z.number().int().min(0)
const readerThreads = z.number().int().min(1).max(READER_THREADS_MAX)
/** Corrosion's backoffs are in seconds; Patina's options in milliseconds. */
const seconds = z
  .number()
  .positive()
  .transform((s) => s * 1000)

// ------------------------------------------------------------------------------------ key tables

/**
 * `[gossip]` keys overriding one membership parameter each, one per SwimOptions field; absent
 * keys keep the profile's value. Ranges follow what the membership code asserts or relies on.
 */
const SWIM_KEYS = {
  probeIntervalMs: positiveInt,
  probeTimeoutMs: positiveInt,
  indirectChecks: positiveInt,
  localHealthMax: nonNegativeInt,
  nacks: z.boolean(),
  buddySystem: z.boolean(),
  suspicionMult: positiveInt,
  suspicionMaxTimeoutMult: positiveInt,
  retransmitMult: positiveInt,
  gossipIntervalMs: positiveInt,
  gossipNodes: positiveInt,
  gossipToTheDeadMs: nonNegativeInt,
  maxPacketBytes: z.number().int().min(MIN_PACKET_BYTES).max(UDP_PAYLOAD_BYTES_MAX),
  pushPullIntervalMs: nonNegativeInt,
  pushPullTimeoutMs: positiveInt,
  pushPullBytesMax: positiveInt,
  joinRetryBaseMs: positiveInt,
  joinRetryMaxMs: positiveInt,
  joinRetryJitter: z.number().min(0).max(1),
  reconnectIntervalMs: nonNegativeInt,
  downNoticeIntervalMs: positiveInt,
  removeDownAfterMs: positiveInt,
  leaveLingerMs: nonNegativeInt,
  membersMax: positiveInt,
  relaysMax: positiveInt,
} satisfies { readonly [K in keyof SwimOptions]-?: z.ZodType<SwimOptions[K], SwimOptions[K]> }

/** A key whose value sets these replication options (several: Corrosion has one key for them). */
function sets(type: z.ZodType<number, number>, ...fields: NumberKey<ReplicationConfig>[]) {
  return type.transform(
    (value) => Object.fromEntries(fields.map((f) => [f, value])) as Partial<ReplicationConfig>,
  )
}

type NumberKey<T> = { [K in keyof T]-?: T[K] extends number ? K : never }[keyof T]

/** `[gossip]` keys of replication: the byte-rate cap. */
const RATE_KEYS = {
  rateLimitBytesPerSec: sets(positiveInt, 'rateBytesPerSec'),
  rateLimitBurstBytes: sets(positiveInt, 'burstBytes'),
}

/**
 * `[perf]`: queue caps, apply batching and sync settings. Corrosion's names where Corrosion has
 * the setting (its backoffs are in seconds); Patina's own keys end in their unit.
 */
const PERF_KEYS = {
  processingQueueLen: sets(positiveInt, 'broadcastQueueMax', 'applyQueueMax'),
  applyQueueMinBatchSize: sets(positiveInt, 'applyBatchMin'),
  applyQueueMaxBatchSize: sets(positiveInt, 'applyBatchMax'),
  minSyncBackoff: sets(seconds, 'syncIntervalMs'),
  maxSyncBackoff: sets(seconds, 'syncIntervalMaxMs'),
  applyQueueBytesMax: sets(positiveInt, 'applyQueueBytesMax'),
  applyTargetMs: sets(positiveInt, 'applyTargetMs'),
  broadcastQueueBytesMax: sets(positiveInt, 'broadcastQueueBytesMax'),
  broadcastDirectMax: sets(nonNegativeInt, 'broadcastDirectMax'),
  broadcastFanout: sets(positiveInt, 'fanout'),
  broadcastTransmissions: sets(nonNegativeInt, 'maxTransmissions'),
  chunkBytes: sets(z.number().int().min(CHUNK_BYTES_MIN), 'chunkBytes'),
  syncSessionsMax: sets(positiveInt, 'syncClientSessionsMax'),
  syncServeSessionsMax: sets(positiveInt, 'syncServerSessionsMax'),
  syncReplyBytes: sets(z.number().int().min(CHUNK_BYTES_MIN), 'syncReplyBytes'),
  syncRoundsMax: sets(positiveInt, 'syncRoundsMax'),
  syncTimeoutMs: sets(positiveInt, 'syncTimeoutMs'),
  bufferedCellsMax: sets(positiveInt, 'bufferCellsMax'),
}

/** `[perf]` keys bounding one local write transaction (not replication options). */
const WRITE_KEYS = {
  /**
   * Seconds, as in Corrosion; read into `write.txTimeoutMs`. `prefault`, not `default`: zod 4
   * returns a default as the output, without the seconds-to-ms transform.
   */
  sqlTxTimeout: seconds.prefault(SQL_TX_TIMEOUT_MS / 1000),
  maxCellBytes: z.number().int().min(1).max(CELL_BYTES_LIMIT).default(CELL_BYTES_MAX),
}

/** The replication defaults with what the keys present set. */
function replicationOptions(
  keys: readonly (Partial<ReplicationConfig> | undefined)[],
): ReplicationConfig {
  const defaults: ReplicationConfig = { ...DEFAULT_REPLICATION, bufferCellsMax: BUFFER_CELLS_MAX }
  return keys.reduce<ReplicationConfig>((options, set) => ({ ...options, ...set }), defaults)
}

// ------------------------------------------------------------------------------------ schema

/**
 * The whole file. Relative paths are resolved against `baseDir` (the config file's directory).
 * Checks that involve two keys run once every key is valid, and report the first key of the pair.
 */
function configSchema(baseDir: string) {
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(baseDir, p))
  return z
    .strictObject({
      db: section({
        path: z.string().min(1),
        schemaPaths: z.array(z.string().min(1)).default([]),
        synchronous: z.enum(['normal', 'full']).default('normal'),
        readerThreads: readerThreads.default(DB_READER_THREADS),
        /** Directory of the subscriptions database: read into `subscriptions.path`. */
        subscriptionsPath: z.string().min(1).optional(),
      }),
      api: section({
        addr: z
          .union([hostPort, z.array(hostPort).min(1)], { error: `${HOST_PORT} or a list of them` })
          .default(DEFAULT_API_ADDR),
        authz: z.strictObject({ 'bearer-token': z.string().min(1).optional() }).optional(),
        maxBodyBytes: positiveInt.default(API_BODY_BYTES_MAX),
        maxInflightTransactions: positiveInt.default(API_INFLIGHT_TRANSACTIONS_MAX),
        maxConcurrentQueries: positiveInt.default(API_CONCURRENT_QUERIES_MAX),
        maxStatements: positiveInt.default(API_STATEMENTS_MAX),
        queryTimeoutMs: nonNegativeInt.default(API_QUERY_TIMEOUT_MS),
        headersTimeoutMs: positiveInt.default(API_HEADERS_TIMEOUT_MS),
        requestTimeoutMs: positiveInt.default(API_REQUEST_TIMEOUT_MS),
        keepAliveTimeoutMs: positiveInt.default(API_KEEP_ALIVE_TIMEOUT_MS),
        maxRowBytes: positiveInt.default(API_ROW_BYTES_MAX),
        maxResponseBufferBytes: positiveInt.default(API_RESPONSE_BUFFER_BYTES_MAX),
        maxConcurrentStreams: positiveInt.default(API_CONCURRENT_STREAMS_MAX),
      }).prefault({}),
      gossip: section({
        addr: hostPort.default(DEFAULT_GOSSIP_ADDR),
        bootstrap: z.array(hostPort).default([]),
        plaintext: z.boolean().default(false),
        /** u16; agents only talk to agents of the same cluster id. */
        clusterId: z.number().int().min(0).max(CLUSTER_ID_MAX).default(DEFAULT_CLUSTER_ID),
        /** Membership timing profile: memberlist's LAN or WAN numbers. */
        profile: z.enum(['lan', 'wan']).default('lan'),
        ...optional(RATE_KEYS),
        ...optional(SWIM_KEYS),
      }).prefault({}),
      subscriptions: section({
        maxSubscriptions: positiveInt.default(SUBS_MAX),
        maxListeners: positiveInt.default(SUBS_LISTENERS_MAX),
        maxListenerLag: positiveInt.default(SUBS_LISTENER_LAG_MAX),
        maxHistory: positiveInt.default(SUBS_HISTORY_MAX),
        maxPendingKeys: positiveInt.default(SUBS_PENDING_KEYS_MAX),
        idleTimeoutMs: nonNegativeInt.default(SUBS_IDLE_TIMEOUT_MS),
        evalTimeoutMs: nonNegativeInt.default(SUBS_EVAL_TIMEOUT_MS),
        readerThreads: readerThreads.default(SUBS_READER_THREADS),
        /** Accept queries that can only be maintained by re-running them whole. */
        fullReevaluation: z.boolean().default(true),
        fullEvalIntervalMs: nonNegativeInt.default(SUBS_FULL_EVAL_INTERVAL_MS),
        batchMs: nonNegativeInt.default(SUBS_BATCH_MS),
      }).prefault({}),
      perf: section({
        ...optional(PERF_KEYS),
        ...WRITE_KEYS,
      }).prefault({}),
      admin: section({ path: z.string().min(1).optional() }).optional(),
      telemetry: section({
        prometheus: z.strictObject({ addr: hostPort }).optional(),
      }).optional(),
      log: section({
        format: z.enum(['plaintext', 'json']).default('json'),
        colors: z.boolean().default(false),
      }).prefault({}),
    })
    .transform((c, ctx) => {
      const { subscriptionsPath, ...db } = c.db
      const { sqlTxTimeout, maxCellBytes, ...replicationKeys } = c.perf
      const dbPath = abs(db.path)
      const { addr, authz, ...apiLimits } = c.api
      const { addr: gossipAddr, bootstrap, plaintext, clusterId, profile } = c.gossip
      const swim: SwimOptions = {
        ...(profile === 'wan' ? WAN_PROFILE : LAN_PROFILE),
        ...pick(c.gossip, SWIM_KEYS),
      }
      const config = {
        db: { ...db, path: dbPath, schemaPaths: db.schemaPaths.map(abs) },
        api: {
          addrs: Array.isArray(addr) ? addr : [addr],
          bearerToken: authz?.['bearer-token'] ?? null,
          ...apiLimits,
        },
        /** Broadcast, apply and sync settings (`[gossip]` rate keys and `[perf]`). */
        replication: replicationOptions([
          ...Object.values(pick(c.gossip, RATE_KEYS)),
          ...Object.values(replicationKeys),
        ]),
        /** Bounds on one local write transaction (`[perf]`). */
        write: { txTimeoutMs: sqlTxTimeout, maxCellBytes },
        gossip: {
          addr: gossipAddr,
          bootstrap,
          plaintext,
          clusterId,
          profile,
          /** Every membership parameter: the profile's, with the `[gossip]` overrides applied. */
          swim,
        },
        subscriptions: {
          /** Directory of the subscriptions database (`[db] subscriptions_path`). */
          path: abs(subscriptionsPath ?? join(dirname(dbPath), 'subscriptions')),
          ...c.subscriptions,
        },
        admin: { path: abs(c.admin?.path ?? join(dirname(dbPath), 'admin.sock')) },
        telemetry: { prometheusAddr: c.telemetry?.prometheus?.addr ?? null },
        log: c.log,
      }
      const issue = inconsistency(config)
      if (issue === null) return config
      ctx.issues.push({ code: 'custom', input: c, ...issue })
      return z.NEVER
    })
}

/**
 * Pairs of keys where the first must stay below (or not exceed) the second, reported in the
 * file's own keys and units; null when none is out of order.
 */
function inconsistency(c: {
  api: { headersTimeoutMs: number; requestTimeoutMs: number }
  gossip: { swim: SwimOptions }
  replication: ReplicationConfig
}): { path: string[]; message: string } | null {
  const { swim: s } = c.gossip
  const r = c.replication
  const sec = (ms: number): number => ms / 1000
  type Pair = [key: string, value: number, otherKey: string, otherValue: number]
  const below: Pair[] = [
    ['gossip.probe_timeout_ms', s.probeTimeoutMs, 'probe_interval_ms', s.probeIntervalMs],
  ]
  const notAbove: Pair[] = [
    // Node refuses a head timeout longer than the request's: the head is part of the request.
    [
      'api.headers_timeout_ms',
      c.api.headersTimeoutMs,
      'request_timeout_ms',
      c.api.requestTimeoutMs,
    ],
    ['gossip.join_retry_base_ms', s.joinRetryBaseMs, 'join_retry_max_ms', s.joinRetryMaxMs],
    ['perf.min_sync_backoff', sec(r.syncIntervalMs), 'max_sync_backoff', sec(r.syncIntervalMaxMs)],
    [
      'perf.apply_queue_min_batch_size',
      r.applyBatchMin,
      'apply_queue_max_batch_size',
      r.applyBatchMax,
    ],
    ['perf.chunk_bytes', r.chunkBytes, 'sync_reply_bytes', r.syncReplyBytes],
  ]
  for (const [key, low, other, high] of below) {
    if (low >= high)
      return { path: key.split('.'), message: `must be less than ${other} (${low} >= ${high})` }
  }
  for (const [key, low, other, high] of notAbove) {
    if (low > high)
      return { path: key.split('.'), message: `must not exceed ${other} (${low} > ${high})` }
  }
  return null
}

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

/** A key as the file writes it: `api.addr`, `gossip.bootstrap[1]`. */
function keyOf(path: readonly PropertyKey[]): string {
  return path
    .map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`))
    .join('')
}

/** What the file has, for "got ...": `the number 8080`, `the string "x"`, `a table`. */
function describeValue(value: unknown): string {
  if (typeof value === 'string') {
    const quoted = JSON.stringify(value)
    return `the string ${quoted.length > 60 ? `${quoted.slice(0, 57)}..."` : quoted}`
  }
  if (typeof value === 'number' || typeof value === 'bigint') return `the number ${value}`
  if (typeof value === 'boolean') return `the boolean ${value}`
  if (Array.isArray(value)) return value.length === 0 ? 'an empty list' : 'a list'
  if (value instanceof Date) return 'a date-time'
  if (isTable(value)) return 'a table'
  return String(value)
}

/** Zod's type names in the file's terms. */
const TYPE_NAMES: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  array: 'a list',
  object: 'a table',
}

function bound(
  issue: { origin: string; inclusive?: boolean },
  limit: number | bigint,
  side: 'min' | 'max',
): string {
  const n = Number(limit)
  if (issue.origin === 'array') {
    const count = side === 'min' ? (issue.inclusive === false ? n + 1 : n) : n
    return `${side === 'min' ? 'at least' : 'at most'} ${count} entr${count === 1 ? 'y' : 'ies'}`
  }
  if (issue.origin === 'string') {
    if (side === 'min' && n <= 1) return 'a non-empty string'
    return `a string of ${side === 'min' ? 'at least' : 'at most'} ${n} characters`
  }
  const op =
    side === 'min'
      ? issue.inclusive === false
        ? '>'
        : '>='
      : issue.inclusive === false
        ? '<'
        : '<='
  return `a number ${op} ${n}`
}

/**
 * Messages for zod's issues, in the file's terms, all of the form "expected ...": the parse's
 * error map, so a schema's own error (the "host:port" keys) still wins. `describeIssue` adds the
 * key and what the file has. Undefined leaves zod's message.
 */
function expectedOf(issue: z.core.$ZodRawIssue): string | undefined {
  switch (issue.code) {
    case 'invalid_type':
      return `expected ${TYPE_NAMES[issue.expected] ?? issue.expected}`
    case 'too_small':
      return `expected ${bound(issue, issue.minimum, 'min')}`
    case 'too_big':
      return `expected ${bound(issue, issue.maximum, 'max')}`
    case 'invalid_value':
      return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`
    case 'invalid_union': {
      // No form fits at all: list the forms (each branch's first issue says what it expected).
      const forms = issue.errors.map((branch) => branch[0]?.message.replace(/^expected /, ''))
      return `expected ${forms.filter((f) => f !== undefined).join(' or ')}`
    }
    // Their own message: the schema's checks, and the key list `describeIssue` writes. The
    // others are not raised by this schema (no formats, records, maps or multiples).
    case 'custom':
    case 'unrecognized_keys':
    case 'invalid_format':
    case 'invalid_key':
    case 'invalid_element':
    case 'not_multiple_of':
      return undefined
  }
}

/**
 * The issue to report: for a value that fits one of a union's forms (a list, for `api.addr`) but
 * is wrong inside, that form's own first issue, with its full path.
 */
function innermost(issue: z.core.$ZodIssue): z.core.$ZodIssue {
  if (issue.code !== 'invalid_union') return issue
  const inside = issue.errors.map((b) => b[0]).find((b) => b !== undefined && b.path.length > 0)
  return inside === undefined
    ? issue
    : innermost({ ...inside, path: [...issue.path, ...inside.path] })
}

function describeIssue(raw: z.core.$ZodIssue): string {
  const issue = innermost(raw)
  const key = keyOf(issue.path)
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.map((k) => (key === '' ? k : `${key}.${k}`))
    return `unknown config key${keys.length > 1 ? 's' : ''} ${keys.map((k) => `"${k}"`).join(', ')}`
  }
  if (issue.code === 'invalid_type' && issue.input === undefined) {
    return `config key "${key}" is required`
  }
  // Checks of two keys ("must not exceed ...") have their own message; the rest say what they
  // expected, and get what the file has.
  const got = issue.message.startsWith('expected ') ? `, got ${describeValue(issue.input)}` : ''
  return `config key "${key}": ${issue.message}${got}`
}

/** Valid settings that are probably mistakes. */
function warningsOf(config: Config): ConfigWarning[] {
  const warnings: ConfigWarning[] = []
  if (config.db.schemaPaths.length === 0) {
    warnings.push({
      key: 'db.schema_paths',
      message:
        'config key "db.schema_paths" is missing or empty: the agent starts with no tables ' +
        '(list .sql files or directories of them, then start again or run `patina reload`)',
    })
  }
  return warnings
}

// ------------------------------------------------------------------------------------ entry points

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
  const result = configSchema(baseDir).safeParse(doc, { error: expectedOf, reportInput: true })
  if (!result.success) {
    const issue = result.error.issues[0]
    throw new ConfigError(
      `${source}: ${issue === undefined ? 'invalid config' : describeIssue(issue)}`,
    )
  }
  const config = deepFreeze(result.data)
  return { config, unimplemented, warnings: warningsOf(config) }
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
