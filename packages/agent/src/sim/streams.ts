/**
 * Framed streams on the simulated network: the same `StreamTransport` / `FramedConnection`
 * contract as TCP (transport/stream.ts), at the level of frames, on virtual time, with the same
 * options (all but `wrap`: there are no sockets to wrap), defaults (transport/defaults.ts) and
 * counters (`StreamStats`). The node's real stream code (push-pull, broadcast links, sync
 * sessions, the stream-kind registrar) runs on it unchanged; test/transport/sim.test.ts runs the
 * transport's behavioural cases against it.
 *
 * What the network does to a stream, drawn from the link profile of each direction:
 * - latency and jitter per frame; frames of one connection stay in order (TCP), so a frame
 *   held back delays every frame behind it (head-of-line blocking);
 * - loss: TCP retransmits, so a lost frame arrives SIM_STREAM_RETRANSMIT_MS later;
 * - reorder: a frame (and those behind it) is held back by up to `reorderDelayMs`, which
 *   reorders it against other connections and datagrams;
 * - reset: with probability `reset` per frame the connection is reset instead (both ends fail
 *   with SOCKET_ERROR, frames in flight are lost), as a middlebox or a peer's RST would;
 * - partition: a SYN across it vanishes (the connect fails with CONNECT_TIMEOUT after
 *   `connectTimeoutMs`); frames wait and are retried, and a connection that cannot deliver for
 *   `streamTimeoutMs` is reset; an RST across it is lost;
 * - crash of a host: its connections are reset (the peer's kernel gets an RST), its listener
 *   is gone (connects are refused with CONNECT_FAILED);
 * - pause of a host: frames, accepts, answers and resolved sends for it wait until it resumes
 *   (its kernel still sends what was written and still answers connects).
 *
 * Addresses: a listener binds "ip:port" on its host's own IP (port 0 picks a free port); the
 * host addresses of both ends (what partitions and link profiles name) are the dialler's host
 * and the listener's host. The accepted side sees the dialler's IP with an ephemeral port.
 */
import assert from 'node:assert/strict'
import { formatAddr, normalizeAddr, parseAddr } from '../transport/address.ts'
import { STREAM_CONNECT_TIMEOUT_MS, STREAM_INBOUND_CONNECTIONS_MAX } from '../transport/defaults.ts'
import { abortError, TransportError } from '../transport/errors.ts'
import {
  connectFailureOf,
  resolveLimits,
  StreamCounters,
  type ConnectionLimits,
} from '../transport/framed-connection.ts'
import type {
  FramedConnection,
  StreamListener,
  StreamOptions,
  StreamStats,
  StreamTransport,
} from '../transport/stream.ts'
import {
  SimConnection,
  type ConnectionLayer,
  type StreamEndpoint,
  type StreamNetwork,
} from './stream-connection.ts'

/** First port handed out for port 0 listens and for the dialler's end of a connection. */
const SIM_EPHEMERAL_PORT_FIRST = 40_000

export type { StreamEndpoint, StreamNetwork } from './stream-connection.ts'
export { SIM_STREAM_RETRANSMIT_MS, SIM_STREAM_SOCKET_BUFFER_BYTES } from './stream-connection.ts'

/** One StreamTransport: the life it belongs to, its limits and its counters. */
interface Side {
  readonly host: string
  readonly endpoint: StreamEndpoint
  readonly counters: StreamCounters
  readonly limits: ConnectionLimits
  readonly connectTimeoutMs: number
  readonly inboundConnectionsMax: number
}

interface ListenerEntry {
  readonly side: Side
  readonly onConnection: (connection: FramedConnection) => void
  readonly accepted: Set<SimConnection>
  closed: boolean
}

/**
 * The stream layer of one SimNetwork: listeners by address, and every open connection (so a
 * crashed life's connections can be reset).
 */
export class SimStreams implements ConnectionLayer {
  readonly network: StreamNetwork
  private readonly listeners = new Map<string, ListenerEntry>()
  private readonly open = new Set<SimConnection>()
  private nextPort = SIM_EPHEMERAL_PORT_FIRST

  constructor(network: StreamNetwork) {
    this.network = network
  }

  now(): number {
    return this.network.scheduler.now()
  }

  at(time: number, fn: () => void): number {
    return this.network.scheduler.at(time, fn)
  }

  cancel(id: number): void {
    if (id >= 0) this.network.scheduler.cancel(id)
  }

  requestDrain(): void {
    this.network.scheduler.requestDrain()
  }

  /**
   * A transport for the life `endpoint` of the host at `host`, with the limits of `options`
   * (the defaults of transport/defaults.ts where unset). `wrap` is not supported: there are no
   * sockets in the simulation.
   */
  transport(host: string, endpoint: StreamEndpoint, options: StreamOptions = {}): StreamTransport {
    assert.ok(options.wrap === undefined, 'simulated streams have no sockets to wrap')
    const side: Side = {
      host,
      endpoint,
      counters: new StreamCounters(),
      limits: resolveLimits(options),
      connectTimeoutMs: options.connectTimeoutMs ?? STREAM_CONNECT_TIMEOUT_MS,
      inboundConnectionsMax: options.inboundConnectionsMax ?? STREAM_INBOUND_CONNECTIONS_MAX,
    }
    return {
      connect: (to, signal) => this.connect(side, to, signal),
      // Bound at once; a bad or taken address rejects.
      listen: (addr, onConnection) =>
        new Promise((resolve) => {
          resolve(this.listen(side, addr, onConnection))
        }),
      stats: (): StreamStats => side.counters.snapshot(),
    }
  }

  private listen(
    side: Side,
    addr: string,
    onConnection: (connection: FramedConnection) => void,
  ): StreamListener {
    const { host, port } = parseAddr(addr, { portZero: true })
    if (host.toLowerCase() !== hostOf(side.host)) {
      throw new TransportError(
        'BIND_FAILED',
        `cannot listen on ${addr}: not an address of ${side.host}`,
      )
    }
    const localAddr = port === 0 ? this.freeAddr(host) : formatAddr(host, port)
    const key = normalizeAddr(localAddr)
    const existing = this.listeners.get(key)
    if (existing !== undefined && existing.side.endpoint.isAlive()) {
      throw new TransportError('BIND_FAILED', `cannot listen on ${addr}: address in use`)
    }
    const entry: ListenerEntry = { side, onConnection, accepted: new Set(), closed: false }
    this.listeners.set(key, entry)
    let closing: Promise<void> | undefined
    return {
      localAddr,
      close: () => {
        closing ??= (async () => {
          entry.closed = true
          if (this.listeners.get(key) === entry) this.listeners.delete(key)
          const accepted = [...entry.accepted]
          for (const c of accepted) c.close()
          await Promise.all(accepted.map((c) => c.closed()))
        })()
        return closing
      },
    }
  }

  /** A port on `host` that no listener holds. */
  private freeAddr(host: string): string {
    for (;;) {
      const addr = formatAddr(host, this.allocatePort())
      if (!this.listeners.has(normalizeAddr(addr))) return addr
    }
  }

  private allocatePort(): number {
    const port = this.nextPort
    this.nextPort = port >= 65_535 ? SIM_EPHEMERAL_PORT_FIRST : port + 1
    return port
  }

  private connect(side: Side, to: string, signal?: AbortSignal): Promise<FramedConnection> {
    const { counters } = side
    const net = this.network
    const from = side.host
    const caller = side.endpoint
    return new Promise<FramedConnection>((resolve, reject) => {
      let key: string
      try {
        key = normalizeAddr(to)
      } catch (error) {
        counters.connectsFailed.bad_address++
        throw error
      }
      if (signal?.aborted === true) {
        counters.connectsFailed.aborted++
        throw abortError(signal, `connect to ${to}`)
      }
      let settled = false
      const settle = (conn: SimConnection | null, err: TransportError | null): void => {
        if (settled) {
          conn?.discard()
          return
        }
        settled = true
        this.cancel(timeout)
        signal?.removeEventListener('abort', onAbort)
        this.requestDrain()
        if (conn !== null && !conn.isGone) {
          conn.opened()
          resolve(conn)
          return
        }
        const failure =
          err ?? new TransportError('CONNECT_FAILED', `connect to ${to}: connection reset`)
        counters.connectsFailed[connectFailureOf(failure)]++
        net.traceEvent(`connect-fail:${failure.code}`, from, to, null)
        reject(failure)
      }
      // Answers reach the caller through its own life: a paused caller sees them when it
      // resumes, a crashed one never does.
      const toCaller = (conn: SimConnection | null, err: TransportError | null): void => {
        if (!caller.isAlive()) {
          conn?.discard()
          return
        }
        caller.dispatch(() => {
          settle(conn, err)
        })
      }
      const onAbort = (): void => {
        settle(null, abortError(signal as AbortSignal, `connect to ${to}`))
      }
      const timeout = this.at(this.now() + side.connectTimeoutMs, () => {
        toCaller(
          null,
          new TransportError(
            'CONNECT_TIMEOUT',
            `connect to ${to}: no answer within ${side.connectTimeoutMs} ms`,
          ),
        )
      })
      signal?.addEventListener('abort', onAbort, { once: true })
      net.traceEvent('connect', from, to, null)
      // The SYN goes to the host that holds the address now (its own address if nobody does).
      const dest = this.listeners.get(key)?.side.host ?? to
      if (net.isBlocked(from, dest) || net.isBlocked(dest, from)) return // the SYN vanishes
      this.at(this.now() + net.oneWayDelay(from, dest), () => {
        this.arrive({ from, caller, side, key, to }, toCaller)
      })
    })
  }

  /** A SYN reaches `key`: refused, dropped at the cap, or a new connection. */
  private arrive(
    syn: {
      readonly from: string
      readonly caller: StreamEndpoint
      readonly side: Side
      /** The address dialled, and its normalized form. */
      readonly to: string
      readonly key: string
    },
    toCaller: (conn: SimConnection | null, err: TransportError | null) => void,
  ): void {
    const { from, caller, side, key } = syn
    const net = this.network
    const entry = this.listeners.get(key)
    const live = entry !== undefined && !entry.closed && entry.side.endpoint.isAlive()
    const dest = entry?.side.host ?? key
    const backAt = this.now() + net.oneWayDelay(dest, from)
    if (!live || entry.accepted.size >= entry.side.inboundConnectionsMax) {
      if (live) entry.side.counters.inboundDropped++
      this.at(backAt, () => {
        toCaller(
          null,
          new TransportError('CONNECT_FAILED', `connect to ${syn.to}: connection refused`),
        )
      })
      return
    }
    const server = entry.side
    const client = new SimConnection(
      this,
      caller,
      { self: from, peer: server.host, remoteAddr: syn.to },
      side,
    )
    // The accepted side sees the dialler's ephemeral port, as over TCP.
    const ephemeral = formatAddr(hostOf(from), this.allocatePort())
    const accepted = new SimConnection(
      this,
      server.endpoint,
      { self: server.host, peer: from, remoteAddr: ephemeral },
      server,
    )
    client.peer = accepted
    accepted.peer = client
    // Nothing the server sends arrives before the dialler has its connection.
    accepted.lastArrival = backAt
    this.open.add(client)
    this.open.add(accepted)
    entry.accepted.add(accepted)
    accepted.onGone = () => entry.accepted.delete(accepted)
    server.endpoint.dispatch(() => {
      if (entry.closed || accepted.isGone) {
        accepted.discard()
        return
      }
      accepted.opened()
      try {
        entry.onConnection(accepted)
      } catch (error) {
        accepted.destroy(
          'handler_error',
          new TransportError('CLOSED', `connection handler threw for ${ephemeral}`, {
            cause: error,
          }),
        )
      }
    })
    this.at(backAt, () => {
      toCaller(client, null)
    })
  }

  /** An RST for `end` leaves the other host now and arrives after the one-way delay. */
  sendRst(end: SimConnection): void {
    if (end.isGone || this.network.isBlocked(end.peerHostAddr, end.hostAddr)) return // lost
    const delay = this.network.oneWayDelay(end.peerHostAddr, end.hostAddr)
    this.at(this.now() + delay, () => {
      if (end.isGone || !end.ownerEndpoint.isAlive()) return
      end.cutWire()
      end.ownerEndpoint.dispatch(() => {
        end.fail(
          'socket_error',
          new TransportError('SOCKET_ERROR', `connection to ${end.remoteAddr} reset by peer`),
        )
      })
    })
  }

  /** Resets the connection of `end` on both sides (each told after its one-way delay). */
  reset(end: SimConnection, why: string): void {
    const peer = end.peer
    this.network.traceEvent('reset', end.hostAddr, end.peerHostAddr, null)
    const err = (c: SimConnection): TransportError =>
      new TransportError('SOCKET_ERROR', `${why} (${c.remoteAddr})`)
    end.cutWire()
    end.ownerEndpoint.dispatch(() => {
      end.fail('socket_error', err(end))
    })
    this.at(this.now() + this.network.oneWayDelay(end.hostAddr, end.peerHostAddr), () => {
      if (peer.isGone || !peer.ownerEndpoint.isAlive()) return
      peer.cutWire()
      peer.ownerEndpoint.dispatch(() => {
        peer.fail('socket_error', err(peer))
      })
    })
  }

  /** Every open connection between hosts `a` and `b` (dialled either way) is reset. */
  resetBetween(a: string, b: string): void {
    for (const c of [...this.open]) {
      if (c.hostAddr === a && c.peerHostAddr === b && !c.peer.isGone) {
        this.reset(c, 'connection reset')
      }
    }
  }

  /** A life ended (crash): its listener goes, its connections vanish and peers get an RST. */
  endpointEnded(endpoint: StreamEndpoint): void {
    for (const [addr, entry] of this.listeners) {
      if (entry.side.endpoint === endpoint) {
        entry.closed = true
        this.listeners.delete(addr)
      }
    }
    for (const c of [...this.open]) {
      if (c.ownerEndpoint !== endpoint) continue
      this.open.delete(c)
      c.vanish()
      this.sendRst(c.peer)
    }
  }

  /** @internal A finished end is no longer tracked. */
  release(end: SimConnection): void {
    this.open.delete(end)
  }
}

/** The host part of "host:port" (brackets of IPv6 removed), lowercased. */
function hostOf(addr: string): string {
  const i = addr.lastIndexOf(':')
  const host = i < 0 ? addr : addr.slice(0, i)
  return (host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host).toLowerCase()
}
