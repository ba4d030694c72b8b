/**
 * The stream-kind registrar: one gossip port serves every stream protocol. The first frame of
 * an accepted connection starts with one byte, the stream kind (transport/stream-kind.ts); the
 * handler registered for that kind takes the connection over (as libp2p's
 * `registrar.handle(protocol, handler)`). A connection whose first frame names no registered
 * kind, or that sends none within `firstFrameTimeoutMs`, is closed unanswered.
 */
import assert from 'node:assert/strict'
import type { Clock } from '../runtime/clock.ts'
import type { FramedConnection } from '../transport/stream.ts'

/** Takes over an accepted connection; `firstFrame` still carries the kind byte. */
export type StreamHandler = (connection: FramedConnection, firstFrame: Uint8Array) => void

export interface RegistrarStats {
  readonly accepted: number
  /** Closed for an unknown kind, an empty first frame, or no first frame in time. */
  readonly refused: number
}

export class Registrar {
  private readonly clock: Clock
  private readonly firstFrameTimeoutMs: number
  private readonly handlers = new Map<number, StreamHandler>()
  private counters = { accepted: 0, refused: 0 }

  constructor(clock: Clock, firstFrameTimeoutMs: number) {
    this.clock = clock
    this.firstFrameTimeoutMs = firstFrameTimeoutMs
  }

  /** Registers the handler of one stream kind (once per kind: a second is a programmer error). */
  handle(kind: number, handler: StreamHandler): void {
    assert.ok(!this.handlers.has(kind), `stream kind ${String(kind)} is already handled`)
    this.handlers.set(kind, handler)
  }

  /** The listener's onConnection: reads the first frame and hands the connection over. */
  accept(connection: FramedConnection): void {
    const timer = this.clock.setTimer(this.firstFrameTimeoutMs, () => {
      connection.close()
    })
    void (async () => {
      let handler: StreamHandler | undefined
      let first: Uint8Array | undefined
      try {
        for await (const frame of connection.frames()) {
          first = frame
          handler = this.handlers.get(frame[0] ?? -1)
          break
        }
      } catch {
        // The connection broke before its first frame: nothing to hand over, it is closed below.
      } finally {
        this.clock.clearTimer(timer)
      }
      if (handler === undefined || first === undefined) {
        this.counters.refused++
        connection.close()
        return
      }
      this.counters.accepted++
      handler(connection, first)
    })()
  }

  stats(): RegistrarStats {
    return { ...this.counters }
  }
}
