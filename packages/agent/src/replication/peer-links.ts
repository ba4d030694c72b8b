/**
 * Outgoing broadcast connections: one TCP stream per peer address, opened on first use (its
 * first frame is the stream kind), reused until it breaks. Sending never waits: while a link
 * connects, frames wait in a small bounded queue; a frame the queue or the connection cannot
 * take is dropped and counted (broadcast is best effort; anti-entropy repairs). A peer that
 * cannot be reached is not dialled again for `retryMs`.
 */
import type { FramedConnection, StreamTransport } from '../transport/stream.ts'

export interface PeerLinksOptions {
  /** Stream kind byte sent as the first frame. */
  readonly kind: number
  /** Frames waiting per link while it connects. */
  readonly pendingMax: number
  readonly retryMs: number
}

export interface PeerLinksStats {
  /** Gauge. */
  readonly links: number
  readonly framesSent: number
  readonly framesDropped: number
  readonly connectsFailed: number
}

interface Link {
  conn: FramedConnection | null
  pending: Uint8Array[]
  failedAt: number
}

export class PeerLinks {
  private readonly transport: StreamTransport
  private readonly options: PeerLinksOptions
  private readonly links = new Map<string, Link>()
  private readonly abort = new AbortController()
  private counters = { framesSent: 0, framesDropped: 0, connectsFailed: 0 }

  constructor(transport: StreamTransport, options: PeerLinksOptions) {
    this.transport = transport
    this.options = options
  }

  send(addr: string, frame: Uint8Array): void {
    if (this.abort.signal.aborted) return
    let link = this.links.get(addr)
    if (link?.conn !== null && link?.conn !== undefined) {
      this.write(link.conn, frame)
      return
    }
    if (link !== undefined && link.failedAt > 0) {
      if (performance.now() - link.failedAt < this.options.retryMs) {
        this.counters.framesDropped++
        return
      }
      this.links.delete(addr)
      link = undefined
    }
    if (link === undefined) {
      link = { conn: null, pending: [], failedAt: 0 }
      this.links.set(addr, link)
      this.connect(addr, link)
    }
    if (link.pending.length >= this.options.pendingMax) {
      this.counters.framesDropped++
      return
    }
    link.pending.push(frame)
  }

  private write(conn: FramedConnection, frame: Uint8Array): void {
    this.counters.framesSent++
    conn.send(frame).catch(() => {
      this.counters.framesSent--
      this.counters.framesDropped++
    })
  }

  private connect(addr: string, link: Link): void {
    this.transport
      .connect(addr, this.abort.signal)
      .then((conn) => {
        if (this.abort.signal.aborted) {
          conn.close()
          return
        }
        link.conn = conn
        this.write(conn, new Uint8Array([this.options.kind]))
        for (const frame of link.pending) this.write(conn, frame)
        link.pending = []
        void conn.closed().then(() => {
          if (this.links.get(addr) === link) this.links.delete(addr)
        })
      })
      .catch(() => {
        this.counters.connectsFailed++
        this.counters.framesDropped += link.pending.length
        link.pending = []
        link.failedAt = performance.now()
      })
  }

  stats(): PeerLinksStats {
    return { links: this.links.size, ...this.counters }
  }

  close(): void {
    this.abort.abort()
    for (const link of this.links.values()) link.conn?.close()
    this.links.clear()
  }
}
