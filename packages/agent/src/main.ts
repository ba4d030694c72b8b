/**
 * The composition root: config -> components -> start, in order. The only module that knows
 * every concrete class. Stopping runs the same list backwards.
 */
import { mkdirSync, statSync } from 'node:fs'
import { createServer, type Server as HttpServer } from 'node:http'
import type { Server as NetServer } from 'node:net'
import { dirname } from 'node:path'
import { Gauge } from 'prom-client'
import type { Logger } from 'pino'
import { adminRequest, startAdminServer } from './admin/admin-server.ts'
import { buildApi, type Api } from './api/server.ts'
import { MEMBERSHIP_LEAVE_TIMEOUT_MS, SHUTDOWN_GRACE_MS } from './config/defaults.ts'
import { parseHostPort, type Config } from './config/load-config.ts'
import { Replica, siteIdHex } from './crdt/replica.ts'
import { startMembership, type Membership } from './membership/agent-membership.ts'
import { createAgentMetrics, type AgentMetrics } from './metrics/agent-metrics.ts'
import { registerMembershipMetrics } from './metrics/membership-metrics.ts'
import { registerReplicationMetrics } from './metrics/replication-metrics.ts'
import { startReplication, type AgentReplication } from './replication/agent-replication.ts'
import { systemClock } from './runtime/clock.ts'
import type { SchemaPlan } from './schema/model.ts'
import { loadSchemaFiles } from './schema/parse-schema.ts'
import { ReaderPool } from './store/reader-pool.ts'
import { createSubsMetrics } from './metrics/subs-metrics.ts'
import { Subscriptions } from './subs/subscriptions.ts'

export interface Agent {
  readonly replica: Replica
  /** Base URLs of the HTTP API, e.g. `http://127.0.0.1:8080`. */
  readonly apiUrls: readonly string[]
  readonly metrics: AgentMetrics
  readonly membership: Membership
  readonly replication: AgentReplication
  /** Re-reads the schema files and applies what changed (additions only). */
  reload(): SchemaPlan
  stop(): Promise<void>
}

function registerStoreMetrics(metrics: AgentMetrics, replica: Replica, path: string): void {
  new Gauge({
    name: 'patina_db_version',
    help: "This agent's own latest version (its count of committed write transactions)",
    registers: [metrics.registry],
    collect() {
      this.set(replica.headOf(replica.siteId))
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

async function listen(api: Api, addr: string): Promise<string> {
  const hp = parseHostPort(addr)
  if (hp === null) throw new Error(`invalid address ${addr}`)
  await api.listen({ host: hp.host, port: hp.port })
  const bound = api.server.address()
  if (bound === null || typeof bound === 'string') return `http://${addr}`
  const host = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address
  return `http://${host}:${bound.port}`
}

export async function startAgent(config: Config, logger: Logger): Promise<Agent> {
  const log = logger.child({ subsystem: 'agent' })
  mkdirSync(dirname(config.db.path), { recursive: true })
  const replica = Replica.open(config.db.path, {
    synchronous: config.db.synchronous,
    bufferCellsMax: config.replication.bufferCellsMax,
  })
  const cleanups: (() => Promise<void> | void)[] = [
    () => {
      replica.close()
    },
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
    const reload = (): SchemaPlan => {
      const plan = replica.applySchema(loadSchemaFiles(config.db.schemaPaths))
      log.info({ ...summarize(plan) }, 'schema applied')
      return plan
    }
    if (config.db.schemaPaths.length > 0) reload()

    const readers = await ReaderPool.open({
      path: config.db.path,
      threads: config.db.readerThreads,
      maxConcurrent: config.api.maxConcurrentQueries,
      timeoutMs: config.api.queryTimeoutMs,
    })
    cleanups.push(() => readers.close())

    const metrics = createAgentMetrics()
    registerStoreMetrics(metrics, replica, config.db.path)

    // Subscriptions evaluate in reader processes of their own: API queries cannot starve them.
    const subsReaders = await ReaderPool.open({
      path: config.db.path,
      threads: config.subscriptions.readerThreads,
      maxConcurrent: config.subscriptions.readerThreads * 4,
      timeoutMs: config.subscriptions.evalTimeoutMs,
    })
    cleanups.push(() => subsReaders.close())
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

    const membership = await startMembership(
      {
        addr: config.gossip.addr,
        bootstrap: config.gossip.bootstrap,
        clusterId: config.gossip.clusterId,
        profile: config.gossip.profile,
        options: config.gossip.swim,
        actorId: siteIdHex(replica.siteId),
        epoch: Date.now(),
        leaveTimeoutMs: MEMBERSHIP_LEAVE_TIMEOUT_MS,
      },
      logger,
    )
    cleanups.push(() => membership.stop())
    registerMembershipMetrics(metrics.registry, membership)

    const replication = startReplication(
      replica,
      membership,
      { clusterId: config.gossip.clusterId, options: config.replication },
      logger,
    )
    // Stopped before membership: nothing is sent to peers once we leave.
    cleanups.push(() => {
      replication.stop()
    })
    registerReplicationMetrics(metrics.registry, replication.replicator, config.replication, () =>
      replication.linkStats(),
    )

    const apiUrls: string[] = []
    for (const addr of config.api.addrs) {
      const api = buildApi({
        replica,
        readers,
        subs,
        config,
        metrics,
        logger,
        members: () => membership.members(),
        health: () => {
          const h = replication.replicator.health()
          return {
            members: membership.memberCounts().alive,
            gaps: h.gaps,
            p99LagS: h.p99LagS,
            queueSize: h.queueSize,
          }
        },
      })
      // Stop accepting, let in-flight requests finish, but not forever: once the grace is over,
      // the connections still open are cut (an open socket would keep the process alive).
      cleanups.push(() =>
        Promise.race([
          api.close(),
          new Promise<void>((resolve) =>
            setTimeout(() => {
              api.server.closeAllConnections()
              resolve()
            }, SHUTDOWN_GRACE_MS).unref(),
          ),
        ]),
      )
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

    const admin: NetServer = await startAdminServer(config.admin.path, async (request) => {
      if (request.cmd === 'reload') return { ok: true, ...summarize(reload()) }
      return Promise.resolve({ ok: false, error: `unknown admin command ${String(request.cmd)}` })
    })
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          admin.close(() => {
            resolve()
          })
        }),
    )

    log.info(
      {
        actor_id: siteIdHex(replica.siteId),
        api: apiUrls,
        gossip: membership.addr,
        db: config.db.path,
      },
      'agent started',
    )
    return { replica, apiUrls, metrics, membership, replication, reload, stop }
  } catch (err) {
    await stop()
    throw err
  }
}

export { adminRequest }
