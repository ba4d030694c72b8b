/**
 * Peer systems for the replication benchmarks, started by the benchmark itself on loopback in
 * its temp directory: a 3-member etcd cluster (driven through its HTTP/JSON gRPC gateway) and a
 * 3-server NATS cluster (through the `nats` client: core pub/sub, and JetStream KV with 3
 * replicas). Each is a `PropagationTarget`: writes go to member 1, and members 2 and 3 report
 * when they see each write (etcd: a watch stream on each; NATS: a subscription or a KV watch on a
 * connection to each server). Every process started here is stopped by its PID.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, openSync, closeSync } from 'node:fs'
import http from 'node:http'
import { join } from 'node:path'
import { LineSplitter } from '@patina/protocol'
import { connect, type KV, type NatsConnection } from 'nats'
import { pickPort, sleep } from './agents.ts'

export const ETCD_BIN = '/usr/bin/etcd'
export const NATS_BIN = '/usr/sbin/nats-server'
const START_TIMEOUT_MS = 30_000
const STOP_TIMEOUT_MS = 10_000

/**
 * A replicated system under the propagation benchmark: `write(id)` writes key `id` on member 1
 * and resolves when member 1 acknowledges it; `observers` other members call `onSeen(o, id)`
 * when they first see it (after `observe()`).
 */
export interface PropagationTarget {
  readonly name: string
  readonly observers: number
  /** What "written" and "seen" mean for this system, for the notes. */
  readonly semantics: string
  observe(onSeen: (observer: number, id: number) => void): void
  /** Called when a write is issued (a polling observer starts polling). */
  issued(id: number): void
  write(id: number): Promise<void>
  close(): Promise<void>
}

/** The payload written for key `id` by the peer systems: ~100 bytes like Patina's row. */
export function payload(id: number): string {
  return `a-${id}-abcdefghij|${id * 7}|${id * 0.5 + 0.25}|d-${String(id).padStart(33, '0')}`
}

// ------------------------------------------------------------------------------ processes

interface PeerProcess {
  readonly name: string
  readonly pid: number
  stop(): Promise<void>
}

function startProcess(
  name: string,
  bin: string,
  args: readonly string[],
  logPath: string,
): PeerProcess {
  const fd = openSync(logPath, 'a')
  let child: ChildProcess
  try {
    child = spawn(bin, args, { stdio: ['ignore', fd, fd] })
  } finally {
    closeSync(fd)
  }
  const pid = child.pid
  if (pid === undefined) throw new Error(`${name} did not start`)
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      resolve()
    })
  })
  const running = (): boolean => child.exitCode === null && child.signalCode === null
  const onExit = (): void => {
    if (running()) process.kill(pid, 'SIGKILL')
  }
  process.once('exit', onExit)
  return {
    name,
    pid,
    async stop() {
      process.removeListener('exit', onExit)
      if (!running()) return
      process.kill(pid, 'SIGTERM')
      const timer = setTimeout(() => {
        if (running()) process.kill(pid, 'SIGKILL')
      }, STOP_TIMEOUT_MS)
      await exited
      clearTimeout(timer)
    },
  }
}

async function ports(n: number): Promise<number[]> {
  const out: number[] = []
  while (out.length < n) {
    out.push(await pickPort())
  }
  return out
}

/** Retries `fn` until it resolves true or the deadline passes. */
async function until(what: string, fn: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const start = performance.now()
  for (;;) {
    if (await fn().catch(() => false)) return
    if (performance.now() - start > timeoutMs) throw new Error(`${what}: not ready in time`)
    await sleep(100)
  }
}

// ------------------------------------------------------------------------------ etcd

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64')
const KEY_PREFIX = 'bench/'

function postJson(
  agent: http.Agent,
  url: string,
  body: unknown,
): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url)
    const text = JSON.stringify(body)
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) },
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.once('error', reject)
        res.once('end', () => {
          const raw = Buffer.concat(chunks).toString('utf8')
          try {
            resolve({ status: res.statusCode ?? 0, json: JSON.parse(raw) as unknown })
          } catch {
            // Not JSON (an error page): the status says what went wrong.
            resolve({ status: res.statusCode ?? 0, json: raw })
          }
        })
      },
    )
    req.once('error', reject)
    req.end(text)
  })
}

interface WatchEvent {
  readonly kv?: { readonly key?: string }
}

/**
 * A `/v3/watch` stream of every key under KEY_PREFIX: the gateway writes one JSON object per
 * line; `onKey` gets each event's key as it arrives.
 */
function watchStream(
  url: string,
  onKey: (key: string) => void,
  onCreated: () => void,
): { close(): void } {
  const u = new URL(url)
  const body = JSON.stringify({
    create_request: { key: b64(KEY_PREFIX), range_end: b64('bench0') },
  })
  const req = http.request({
    host: u.hostname,
    port: u.port,
    path: '/v3/watch',
    method: 'POST',
    headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
  })
  const splitter = new LineSplitter()
  req.on('response', (res) => {
    res.on('data', (chunk: Buffer) => {
      for (const line of splitter.push(chunk)) {
        const msg = JSON.parse(line) as {
          result?: { created?: boolean; events?: readonly WatchEvent[] }
        }
        if (msg.result?.created === true) onCreated()
        for (const e of msg.result?.events ?? []) {
          if (e.kv?.key !== undefined) onKey(Buffer.from(e.kv.key, 'base64').toString('utf8'))
        }
      }
    })
    // The stream ends when the benchmark closes it or etcd stops.
    res.on('error', () => undefined)
  })
  // A stream torn down at close reports an error here; nothing waits on it.
  req.on('error', () => undefined)
  req.end(body)
  return {
    close: () => {
      req.destroy()
    },
  }
}

/** A 3-member etcd cluster on loopback; the target writes on member 1, watches 2 and 3. */
export async function startEtcd(dir: string): Promise<PropagationTarget> {
  const n = 3
  const p = await ports(2 * n)
  const peerUrl = (i: number): string => `http://127.0.0.1:${p[2 * i + 1] ?? 0}`
  const clientUrl = (i: number): string => `http://127.0.0.1:${p[2 * i] ?? 0}`
  const cluster = Array.from({ length: n }, (_, i) => `m${i + 1}=${peerUrl(i)}`).join(',')
  const procs: PeerProcess[] = []
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 })
  const watches: { close(): void }[] = []
  const close = async (): Promise<void> => {
    for (const w of watches) w.close()
    agent.destroy()
    await Promise.all(procs.map((pr) => pr.stop()))
  }
  try {
    for (let i = 0; i < n; i++) {
      const d = join(dir, `etcd-m${i + 1}`)
      mkdirSync(d, { recursive: true })
      procs.push(
        startProcess(
          `etcd m${i + 1}`,
          ETCD_BIN,
          [
            '--name',
            `m${i + 1}`,
            '--data-dir',
            join(d, 'data'),
            '--listen-client-urls',
            clientUrl(i),
            '--advertise-client-urls',
            clientUrl(i),
            '--listen-peer-urls',
            peerUrl(i),
            '--initial-advertise-peer-urls',
            peerUrl(i),
            '--initial-cluster',
            cluster,
            '--initial-cluster-state',
            'new',
            '--initial-cluster-token',
            `patina-bench-${process.pid}`,
            '--logger',
            'zap',
            '--log-level',
            'error',
          ],
          join(d, 'etcd.log'),
        ),
      )
    }
    for (let i = 0; i < n; i++) {
      await until(
        `etcd m${i + 1}`,
        async () => {
          const res = await fetch(`${clientUrl(i)}/health`, { signal: AbortSignal.timeout(1000) })
          const h = (await res.json()) as { health?: string }
          return h.health === 'true'
        },
        START_TIMEOUT_MS,
      )
    }
    const status = await postJson(agent, `${clientUrl(0)}/v3/maintenance/status`, {})
    const st = status.json as { header?: { member_id?: string }; leader?: string }
    const leader = st.header?.member_id !== undefined && st.header.member_id === st.leader
    let onSeen: (observer: number, id: number) => void = () => undefined
    let created = 0
    for (let o = 0; o < n - 1; o++) {
      watches.push(
        watchStream(
          clientUrl(o + 1),
          (key) => {
            onSeen(o, Number(key.slice(KEY_PREFIX.length)))
          },
          () => {
            created++
          },
        ),
      )
    }
    await until('etcd watches', () => Promise.resolve(created === n - 1), START_TIMEOUT_MS)
    return {
      name: 'etcd 3.4, 3 members',
      observers: n - 1,
      semantics:
        `etcd: PUT /v3/kv/put on member 1 (${leader ? 'the leader' : 'a follower'}; raft commit, ` +
        'fsync of the WAL per write, etcd 3.4 has no switch to turn it off), seen = event on a ' +
        '/v3/watch stream to members 2 and 3',
      observe(cb) {
        onSeen = cb
      },
      issued() {
        // Watches push events: nothing to start.
      },
      async write(id) {
        const res = await postJson(agent, `${clientUrl(0)}/v3/kv/put`, {
          key: b64(`${KEY_PREFIX}${id}`),
          value: b64(payload(id)),
        })
        if (res.status !== 200) throw new Error(`etcd put ${id}: ${res.status}`)
      },
      close,
    }
  } catch (err) {
    await close()
    throw err
  }
}

// ------------------------------------------------------------------------------ NATS

/** A 3-server NATS cluster on loopback (JetStream on, file store in the temp dir). */
async function startNatsServers(dir: string): Promise<{ urls: string[]; procs: PeerProcess[] }> {
  const n = 3
  const p = await ports(3 * n)
  const clientPort = (i: number): number => p[3 * i] ?? 0
  const routePort = (i: number): number => p[3 * i + 1] ?? 0
  const monitorPort = (i: number): number => p[3 * i + 2] ?? 0
  const procs: PeerProcess[] = []
  try {
    for (let i = 0; i < n; i++) {
      const d = join(dir, `nats-s${i + 1}`)
      mkdirSync(d, { recursive: true })
      const routes = Array.from({ length: n }, (_, j) => j)
        .filter((j) => j !== i)
        .map((j) => `nats://127.0.0.1:${routePort(j)}`)
        .join(',')
      procs.push(
        startProcess(
          `nats s${i + 1}`,
          NATS_BIN,
          [
            '-a',
            '127.0.0.1',
            '-p',
            String(clientPort(i)),
            '-m',
            String(monitorPort(i)),
            '-n',
            `s${i + 1}`,
            '--cluster_name',
            'patina-bench',
            '--cluster',
            `nats://127.0.0.1:${routePort(i)}`,
            '--routes',
            routes,
            '-js',
            '-sd',
            join(d, 'store'),
          ],
          join(d, 'nats.log'),
        ),
      )
    }
    for (let i = 0; i < n; i++) {
      await until(
        `nats s${i + 1} routes`,
        async () => {
          const res = await fetch(`http://127.0.0.1:${monitorPort(i)}/routez`, {
            signal: AbortSignal.timeout(1000),
          })
          const r = (await res.json()) as { num_routes?: number }
          return (r.num_routes ?? 0) >= n - 1
        },
        START_TIMEOUT_MS,
      )
    }
    return { urls: Array.from({ length: n }, (_, i) => `127.0.0.1:${clientPort(i)}`), procs }
  } catch (err) {
    await Promise.all(procs.map((pr) => pr.stop()))
    throw err
  }
}

/** Core NATS: publish on server 1 (then flush), seen = delivered to subscribers on 2 and 3. */
export async function startNatsPubSub(dir: string): Promise<PropagationTarget> {
  const { urls, procs } = await startNatsServers(join(dir, 'pubsub'))
  const conns: NatsConnection[] = []
  const close = async (): Promise<void> => {
    await Promise.all(conns.map((c) => c.close().catch(() => undefined)))
    await Promise.all(procs.map((pr) => pr.stop()))
  }
  try {
    for (const url of urls) conns.push(await connect({ servers: url, noEcho: true }))
    const [pub, ...subs] = conns
    if (pub === undefined) throw new Error('no connection')
    let onSeen: (observer: number, id: number) => void = () => undefined
    const probes = new Set<number>()
    subs.forEach((c, o) => {
      c.subscribe('bench.>', {
        callback: (err, msg) => {
          if (err !== null) return
          const id = Number(msg.subject.slice('bench.'.length))
          if (id < 0) probes.add(o)
          else onSeen(o, id)
        },
      })
    })
    await Promise.all(subs.map((c) => c.flush()))
    // Interest crosses the routes asynchronously: probe until both subscribers get messages.
    await until(
      'nats subscription interest',
      async () => {
        pub.publish('bench.-1', new Uint8Array(1))
        await pub.flush()
        await sleep(20)
        return probes.size === subs.length
      },
      START_TIMEOUT_MS,
    )
    const encoder = new TextEncoder()
    return {
      name: 'NATS 2.9 core pub/sub, 3 servers',
      observers: subs.length,
      semantics:
        'NATS core: publish on server 1 then flush (PING/PONG: server 1 has it), seen = ' +
        'delivered to a subscriber connected to server 2 / 3 (in memory, at most once)',
      observe(cb) {
        onSeen = cb
      },
      issued() {
        // Subscriptions push messages: nothing to start.
      },
      async write(id) {
        pub.publish(`bench.${id}`, encoder.encode(payload(id)))
        await pub.flush()
      },
      close,
    }
  } catch (err) {
    await close()
    throw err
  }
}

/** JetStream KV, 3 replicas: put on server 1 (PubAck), seen = KV watch event on 2 and 3. */
export async function startNatsKv(dir: string): Promise<PropagationTarget> {
  const { urls, procs } = await startNatsServers(join(dir, 'kv'))
  const conns: NatsConnection[] = []
  const iterators: { stop(): void }[] = []
  const close = async (): Promise<void> => {
    for (const it of iterators) it.stop()
    await Promise.all(conns.map((c) => c.close().catch(() => undefined)))
    await Promise.all(procs.map((pr) => pr.stop()))
  }
  try {
    for (const url of urls) conns.push(await connect({ servers: url }))
    const [pub, ...subs] = conns
    if (pub === undefined) throw new Error('no connection')
    let kv: KV | undefined
    // The JetStream meta leader is elected after the routes are up: retry the bucket.
    await until(
      'nats jetstream kv bucket',
      async () => {
        kv = await pub.jetstream().views.kv('bench', { replicas: 3, history: 1 })
        return true
      },
      START_TIMEOUT_MS,
    )
    const bucket = kv
    if (bucket === undefined) throw new Error('no kv bucket')
    let onSeen: (observer: number, id: number) => void = () => undefined
    const probes = new Set<number>()
    for (let o = 0; o < subs.length; o++) {
      const c = subs[o] as NatsConnection
      const view = await c.jetstream().views.kv('bench')
      const it = await view.watch({ key: '>' })
      iterators.push(it)
      void (async () => {
        for await (const e of it) {
          const id = Number(e.key.slice('k.'.length))
          if (id < 0) probes.add(o)
          else onSeen(o, id)
        }
      })()
    }
    await until(
      'nats kv watches',
      async () => {
        await bucket.put('k.-1', new Uint8Array(1))
        await sleep(20)
        return probes.size === subs.length
      },
      START_TIMEOUT_MS,
    )
    const encoder = new TextEncoder()
    return {
      name: 'NATS 2.9 JetStream KV R3, 3 servers',
      observers: subs.length,
      semantics:
        'NATS JetStream KV (3 replicas, file store, no fsync per write by default): put on ' +
        'server 1 (PubAck: the stream leader has a quorum), seen = KV watch event on a ' +
        'connection to server 2 / 3',
      observe(cb) {
        onSeen = cb
      },
      issued() {
        // Watches push entries: nothing to start.
      },
      async write(id) {
        await bucket.put(`k.${id}`, encoder.encode(payload(id)))
      },
      close,
    }
  } catch (err) {
    await close()
    throw err
  }
}

/** Which peer binaries are installed (a missing one is skipped, and the output says so). */
export function peersInstalled(): { etcd: boolean; nats: boolean } {
  return { etcd: existsSync(ETCD_BIN), nats: existsSync(NATS_BIN) }
}
