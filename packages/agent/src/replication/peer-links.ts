/**
 * Outgoing broadcast connections: one stream per peer address, opened on first use (its first
 * frame is the stream kind) and kept up by a ReconnectingConnection (transport/reconnect.ts:
 * jittered exponential backoff on the injected clock). Sending never waits:
 * - while a link connects, frames wait in a small queue capped in frames and bytes;
 * - while it waits to retry after a failure, frames are dropped;
 * - a frame the queue or the connection cannot take is dropped.
 * Every drop is counted: broadcast is best effort, anti-entropy repairs. A link nothing was sent
 * on for `idleMs` (a peer that left) is closed.
 */
import type { Clock, TimerId } from '../runtime/clock.ts'
import type { Random } from '../runtime/random.ts'
import { ReconnectingConnection } from '../transport/reconnect.ts'
import type { FramedConnection, StreamTransport } from '../transport/stream.ts'

export interface PeerLinksComponents {
  readonly transport: StreamTransport
  readonly clock: Clock
  readonly random: Random
}

export interface PeerLinksOptions {
  /** Stream kind byte sent as the first frame. */
  readonly kind: number
  /** Frames waiting per link while it connects; more are dropped. */
  readonly pendingMax: number
  /** Bytes of frames waiting per link while it connects; more are dropped. */
  readonly pendingBytesMax: number
  /** A link nothing was sent on for this long is closed (checked every idleMs / 2). */
  readonly idleMs: number
}

export interface PeerLinksStats {
  /** Gauge. */
  readonly links: number
  readonly framesSent: number
  readonly framesDropped: number
  readonly connectsFailed: number
}

interface Link {
  readonly connection: ReconnectingConnection
  readonly abort: AbortController
  pending: Uint8Array[]
  pendingBytes: number
  lastSendMs: number
  disconnected: boolean
}

export class PeerLinks {
  private readonly components: PeerLinksComponents
  private readonly options: PeerLinksOptions
  private readonly links = new Map<string, Link>()
  private closed = false
  private sweepTimer: TimerId | null = null
  private counters = { framesSent: 0, framesDropped: 0, connectsFailed: 0 }

  constructor(components: PeerLinksComponents, options: PeerLinksOptions) {
    this.components = components
    this.options = options
  }

  send(addr: string, frame: Uint8Array): void {
    if (this.closed) return
    const link = this.links.get(addr) ?? this.open(addr)
    link.lastSendMs = this.components.clock.now()
    const conn = link.connection.current()
    if (conn !== undefined) {
      this.write(conn, frame)
      return
    }
    const connecting = link.connection.stats().state === 'connecting'
    if (
      !connecting ||
      link.pending.length >= this.options.pendingMax ||
      link.pendingBytes + frame.length > this.options.pendingBytesMax
    ) {
      this.counters.framesDropped++
      return
    }
    link.pending.push(frame)
    link.pendingBytes += frame.length
  }

  private open(addr: string): Link {
    const abort = new AbortController()
    const link: Link = {
      abort,
      pending: [],
      pendingBytes: 0,
      lastSendMs: this.components.clock.now(),
      disconnected: false,
      connection: new ReconnectingConnection(
        {
          transport: this.components.transport,
          clock: this.components.clock,
          random: this.components.random,
        },
        {
          addr,
          signal: abort.signal,
          onConnect: (conn) => {
            this.write(conn, new Uint8Array([this.options.kind]))
            for (const frame of link.pending) this.write(conn, frame)
            this.clearPending(link, false)
          },
          onEvent: (event) => {
            // A retry follows either a failed connect or a disconnect (told just before it).
            if (event.type === 'disconnected') link.disconnected = true
            if (event.type !== 'retrying') return
            if (!link.disconnected) this.counters.connectsFailed++
            link.disconnected = false
            this.clearPending(link, true)
          },
        },
      ),
    }
    this.links.set(addr, link)
    link.connection.start()
    this.armSweep()
    return link
  }

  private clearPending(link: Link, dropped: boolean): void {
    if (dropped) this.counters.framesDropped += link.pending.length
    link.pending = []
    link.pendingBytes = 0
  }

  private write(conn: FramedConnection, frame: Uint8Array): void {
    this.counters.framesSent++
    conn.send(frame).catch(() => {
      this.counters.framesSent--
      this.counters.framesDropped++
    })
  }

  private armSweep(): void {
    if (this.sweepTimer !== null || this.closed) return
    this.sweepTimer = this.components.clock.setTimer(this.options.idleMs / 2, () => {
      this.sweepTimer = null
      const now = this.components.clock.now()
      for (const [addr, link] of this.links) {
        if (now - link.lastSendMs < this.options.idleMs) continue
        this.clearPending(link, true)
        link.abort.abort()
        this.links.delete(addr)
      }
      if (this.links.size > 0) this.armSweep()
    })
  }

  stats(): PeerLinksStats {
    return { links: this.links.size, ...this.counters }
  }

  close(): void {
    this.closed = true
    if (this.sweepTimer !== null) this.components.clock.clearTimer(this.sweepTimer)
    this.sweepTimer = null
    for (const link of this.links.values()) link.abort.abort()
    this.links.clear()
  }
}
