/**
 * The agent's configuration: Corrosion's TOML keys, validated, with every default filled in,
 * frozen. Keys Corrosion has and Patina does not implement yet are accepted and listed in one
 * warning; any other unknown key, or a bad value, is a ConfigError naming the key.
 */
import { readFileSync } from 'node:fs'
import { dirname, isAbsolute, join, resolve } from 'node:path'
import { parse as parseToml, TomlError } from 'smol-toml'
import { z } from 'zod'
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
} from './defaults.ts'

export class ConfigError extends Error {
  override readonly name = 'ConfigError'
  readonly code = 'CONFIG_INVALID'
}

export interface Config {
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
  'db.subscriptions_path',
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
  'perf',
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

const schema = z.strictObject({
  db: z.strictObject({
    path: z.string().min(1),
    schema_paths: z.array(z.string().min(1)).default([]),
    synchronous: z.enum(['normal', 'full']).default('normal'),
    reader_threads: z.number().int().min(1).max(64).default(DB_READER_THREADS),
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
      ...swimOverrides,
    })
    .default({
      addr: DEFAULT_GOSSIP_ADDR,
      bootstrap: [],
      plaintext: false,
      cluster_id: DEFAULT_CLUSTER_ID,
      profile: 'lan',
    }),
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
    gossip: {
      addr: c.gossip.addr,
      bootstrap: c.gossip.bootstrap,
      plaintext: c.gossip.plaintext,
      clusterId: c.gossip.cluster_id,
      profile: c.gossip.profile,
      swim,
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
