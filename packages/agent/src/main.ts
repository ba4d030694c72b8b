/**
 * The composition root: config -> components -> start, in order. The only module that knows
 * every concrete class. Stopping runs the same list backwards.
 */
import { actorIdHex } from './runtime/actor-id.ts'
import { mkdirSync, statSync } from 'node:fs'
import { createServer, type Server as HttpServer } from 'node:http'
import type { Server as NetServer } from 'node:net'
import { dirname } from 'node:path'
import { Gauge } from 'prom-client'
import type { Logger } from 'pino'
import { startAdminServer } from './admin/admin-server.ts'
import { serveH2c } from './api/h2c.ts'
import { buildApi, type Api } from './api/server.ts'
import { MEMBERSHIP_LEAVE_TIMEOUT_MS, SHUTDOWN_GRACE_MS } from './config/defaults.ts'
import { SUBS_EVALS_PER_READER_MAX } from './subs/subs-defaults.ts'
import { parseHostPort, type Config } from './config/load-config.ts'
import { Replica, type ReplicaOptions } from './crdt/replica.ts'
import { isStorageFull, prepareReserve, RESERVE_FILE, storageState } from './store/storage-space.ts'
import { DEADLINE_FIX } from './store/deadline.ts'
import { createAgentMetrics, type AgentMetrics } from './metrics/agent-metrics.ts'
import { EventLoopMonitor } from './metrics/event-loop.ts'
import { registerReaderMetrics } from './metrics/reader-metrics.ts'
import { registerMembershipMetrics } from './metrics/membership-metrics.ts'
import { registerReplicationMetrics } from './metrics/replication-metrics.ts'
import { createNode, type PatinaNode } from './node/create-node.ts'
import { PORT_ZERO_ATTEMPTS } from './node/defaults.ts'
import { systemClock } from './runtime/clock.ts'
import { systemRandom } from './runtime/random.ts'
import type { SchemaPlan } from './schema/model.ts'
import { loadSchemaFiles } from './schema/parse-schema.ts'
import { ReaderPool } from './query/reader-pool.ts'
import { createSubsMetrics } from './metrics/subs-metrics.ts'
import { Subscriptions } from './subs/subscriptions.ts'
import { parseAddr } from './transport/address.ts'
import { UdpTransport } from './transport/datagram.ts'
import { TcpStreamTransport } from './transport/stream.ts'

export interface Agent {
  readonly replica: Replica
  /** Base URLs of the HTTP API, e.g. `http://127.0.0.1:8080`. */
  readonly apiUrls: readonly string[]
  /** The API servers, one per address (for `inject()` in tests). */
  readonly apis: readonly Api[]
  readonly metrics: AgentMetrics
  /** Membership and replication on the gossip address. */
  readonly node: PatinaNode
  /** Re-reads the schema files and applies what changed (additions only). */
  reload(): SchemaPlan
  stop(): Promise<void>
}

function registerStoreMetrics(metrics: AgentMetrics, replica: Replica, path: string): void {
  new Gauge({
    name: 'patina_sql_deadline_enabled',
    help: '1 when write transactions run under [perf] sql_tx_timeout (native extension loaded)',
    registers: [metrics.registry],
    collect() {
      this.set(replica.deadlineEnabled ? 1 : 0)
    },
  })
  new Gauge({
    name: 'patina_db_version',
    help: "This agent's own latest version (its count of committed write transactions)",
    registers: [metrics.registry],
    collect() {
      this.set(replica.headOf(replica.actorId))
    },
  })
  new Gauge({
    name: 'patina_db_size_bytes',
    help: 'Size of the SQLite database: main file and WAL',
    labelNames: ['file'] as const,
    registers: [metrics.registry],
    collect() {
      const size = (p: string): number => {
        try {
          return statSync(p).size
        } catch {
          return 0 // the WAL does not exist between checkpoints on some platforms
        }
      }
      this.set({ file: 'main' }, size(path))
      this.set({ file: 'wal' }, size(`${path}-wal`))
    },
  })
}

function summarize(plan: SchemaPlan): Record<string, unknown> {
  return {
    newTables: plan.newTables.map((t) => t.name),
    newColumns: plan.newColumns.map((c) => `${c.table}.${c.column.name}`),
    createdIndexes: plan.createIndexes.map((i) => i.name),
    droppedIndexes: plan.dropIndexes.map((i) => i.name),
  }
}

/** Hosts that mean "every interface": fine to bind, but not an address peers can reach. */
function isUnspecified(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || /^[0:]+$/.test(host)
}

/**
 * The node on real sockets: UDP and TCP bound to the same `[gossip] addr` (with port 0, the
 * same free port for both, retried when TCP finds the port UDP got taken), the system clock.
 */
async function startNode(config: Config, replica: Replica, logger: Logger): Promise<PatinaNode> {
  const { host, port } = parseAddr(config.gossip.addr, { portZero: true })
  if (isUnspecified(host)) {
    throw new Error(
      `[gossip] addr ${config.gossip.addr}: ${host} is not an address peers can reach; ` +
        'give the address of one interface (e.g. "10.0.0.1:8787")',
    )
  }
  const attempts = port === 0 ? PORT_ZERO_ATTEMPTS : 1
  let lastError: unknown
  for (let i = 0; i < attempts; i++) {
    const node = createNode(
      {
        clock: systemClock(),
        random: systemRandom(),
        replica,
        datagrams: await UdpTransport.bind(config.gossip.addr),
        streams: new TcpStreamTransport(),
        logger,
      },
      {
        epoch: Date.now(),
        clusterId: config.gossip.clusterId,
        bootstrap: config.gossip.bootstrap,
        swim: config.gossip.swim,
        replication: config.replication,
        leaveTimeoutMs: MEMBERSHIP_LEAVE_TIMEOUT_MS,
      },
    )
    try {
      await node.start()
      return node
    } catch (err) {
      lastError = err
      await node.stop()
    }
  }
  throw lastError
}

async function listen(api: Api, addr: string): Promise<string> {
  const hp = parseHostPort(addr)
  if (hp === null) throw new Error(`invalid address ${addr}`)
  await api.listen({ host: hp.host, port: hp.port })
  const bound = api.server.address()
  if (bound === null || typeof bound === 'string') return `http://${addr}`
  const host = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address
  return `http://${host}:${bound.port}`
}

/**
 * A full disk must not stop the start (store/storage-space.ts): releases the reserve file when
 * the disk is full, else creates it. Returns the warning to log once the database is open (the
 * agent then serves reads), or null when the disk is not full.
 */
function startOnFullDisk(dir: string, log: Logger): (() => void) | null {
  const { released } = prepareReserve(dir)
  const storage = storageState(dir)
  if (!storage.full) return null
  return () => {
    log.warn(
      { free_bytes: storage.freeBytes, released_reserve_bytes: released },
      `storage full: ${storage.reason}; reads are served` +
        (released > 0 ? ` (released the ${released}-byte ${RESERVE_FILE} to start)` : ''),
    )
  }
}

/** Replica.open, with the reason in words when the disk is too full to even open the file. */
function openReplica(path: string, options: ReplicaOptions): Replica {
  try {
    return Replica.open(path, options)
  } catch (err) {
    if (!isStorageFull(err)) throw err
    throw new Error(
      `cannot open ${path}: the disk is full (${err instanceof Error ? err.message : String(err)}); ` +
        `SQLite needs a few pages (its ${path}-shm index, 32 KiB) even to read: free some space`,
      { cause: err },
    )
  }
}

/** The health check `storage_full`, when the filesystem of the database is full. */
function storageFullCheck(dir: string): { storageFull?: string } {
  const storage = storageState(dir)
  return storage.full ? { storageFull: storage.reason } : {}
}

export async function startAgent(config: Config, logger: Logger): Promise<Agent> {
  const log = logger.child({ subsystem: 'agent' })
  mkdirSync(dirname(config.db.path), { recursive: true })
  // The admin socket first: a second agent on the same socket (and so, usually, the same data
  // directory) is refused before it opens anything.
  let reload: (() => SchemaPlan) | null = null
  const admin: NetServer = await startAdminServer(config.admin.path, async (request) => {
    if (request.cmd !== 'reload') {
      return Promise.resolve({ ok: false, error: `unknown admin command ${String(request.cmd)}` })
    }
    if (reload === null) return Promise.resolve({ ok: false, error: 'the agent is starting' })
    return Promise.resolve({ ok: true, ...summarize(reload()) })
  })
  const cleanups: (() => Promise<void> | void)[] = [
    () =>
      new Promise<void>((resolve) => {
        admin.close(() => {
          resolve()
        })
      }),
  ]
  const stop = async (): Promise<void> => {
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup()
      } catch (err) {
        log.error({ err }, 'error while stopping')
      }
    }
    cleanups.length = 0
  }
  try {
    const dataDir = dirname(config.db.path)
    const warnFullDisk = startOnFullDisk(dataDir, log)
    const replica = openReplica(config.db.path, {
      synchronous: config.db.synchronous,
      bufferCellsMax: config.replication.bufferCellsMax,
      maxCellBytes: config.write.maxCellBytes,
      txTimeoutMs: config.write.txTimeoutMs,
    })
    if (replica.deadlineProblem !== null) {
      log.warn(
        `write transactions have no [perf] sql_tx_timeout: ${replica.deadlineProblem}; ` +
          `to fix: ${DEADLINE_FIX}`,
      )
    }
    cleanups.push(() => {
      replica.close()
    })
    const applySchema = (): SchemaPlan => {
      const plan = replica.applySchema(loadSchemaFiles(config.db.schemaPaths))
      log.info({ ...summarize(plan) }, 'schema applied')
      return plan
    }
    if (config.db.schemaPaths.length > 0) applySchema()
    reload = applySchema

    const readers = await ReaderPool.open({
      path: config.db.path,
      processes: config.db.readerThreads,
      maxConcurrent: config.api.maxConcurrentQueries,
      timeoutMs: config.api.queryTimeoutMs,
      maxRowBytes: config.api.maxRowBytes,
    })
    cleanups.push(() => readers.close())

    const metrics = createAgentMetrics()
    registerStoreMetrics(metrics, replica, config.db.path)
    const eventLoop = new EventLoopMonitor({
      registry: metrics.registry,
      logger,
      clock: systemClock(),
    })
    eventLoop.start()
    cleanups.push(() => {
      eventLoop.stop()
    })

    // Subscriptions evaluate in reader processes of their own: API queries cannot starve them.
    const subsReaders = await ReaderPool.open({
      path: config.db.path,
      processes: config.subscriptions.readerThreads,
      maxConcurrent: config.subscriptions.readerThreads * SUBS_EVALS_PER_READER_MAX,
      timeoutMs: config.subscriptions.evalTimeoutMs,
      maxRowBytes: config.api.maxRowBytes,
    })
    cleanups.push(() => subsReaders.close())
    registerReaderMetrics(metrics.registry, { queries: readers, subscriptions: subsReaders })
    const subs = Subscriptions.open({
      replica,
      dbPath: config.db.path,
      config: config.subscriptions,
      synchronous: config.db.synchronous,
      runner: subsReaders,
      metrics: createSubsMetrics(metrics.registry, config.subscriptions),
      logger,
      clock: systemClock(),
    })
    cleanups.push(() => subs.stop())

    const node = await startNode(config, replica, logger)
    cleanups.push(() => node.stop())
    registerMembershipMetrics(metrics.registry, node)
    registerReplicationMetrics(metrics.registry, node.replicator, config.replication, () =>
      node.linkStats(),
    )

    const apiUrls: string[] = []
    const apis: Api[] = []
    for (const addr of config.api.addrs) {
      const api = buildApi({
        replica,
        readers,
        subs,
        config,
        metrics,
        logger,
        members: () => node.members(),
        health: () => {
          const h = node.replicator.health()
          return {
            members: node.memberCounts().alive,
            gaps: h.gaps,
            p99LagS: h.p99LagS,
            queueSize: h.queueSize,
            ...storageFullCheck(dataDir),
          }
        },
      })
      // HTTP/1.1 and h2c on the same port (api/h2c.ts).
      const h2c = serveH2c(api, {
        headersTimeoutMs: config.api.headersTimeoutMs,
        requestTimeoutMs: config.api.requestTimeoutMs,
        keepAliveTimeoutMs: config.api.keepAliveTimeoutMs,
        maxConcurrentStreams: config.api.maxConcurrentStreams,
        registry: metrics.registry,
      })
      // Stop accepting, let in-flight requests finish (HTTP/2 sessions get GOAWAY), but not
      // forever: once the grace is over, the connections still open are cut (an open socket
      // would keep the process alive).
      cleanups.push(() =>
        Promise.race([
          Promise.all([api.close(), h2c.close()]).then(() => undefined),
          new Promise<void>((resolve) =>
            setTimeout(() => {
              api.server.closeAllConnections()
              h2c.destroy()
              resolve()
            }, SHUTDOWN_GRACE_MS).unref(),
          ),
        ]),
      )
      apis.push(api)
      apiUrls.push(await listen(api, addr))
    }

    if (config.telemetry.prometheusAddr !== null) {
      const hp = parseHostPort(config.telemetry.prometheusAddr)
      const server: HttpServer = createServer((_req, res) => {
        void metrics.registry.metrics().then((text) => {
          res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text)
        })
      })
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(hp?.port, hp?.host, () => {
          resolve()
        })
      })
      cleanups.push(
        () =>
          new Promise<void>((resolve) => {
            server.close(() => {
              resolve()
            })
          }),
      )
    }

    warnFullDisk?.()
    log.info(
      {
        actor_id: actorIdHex(replica.actorId),
        api: apiUrls,
        gossip: node.addr,
        db: config.db.path,
      },
      'agent started',
    )
    return { replica, apiUrls, apis, metrics, node, reload: applySchema, stop }
  } catch (err) {
    await stop()
    throw err
  }
}
