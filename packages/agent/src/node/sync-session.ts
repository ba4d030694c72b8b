/**
 * The client side of one sync session over a stream (kind STREAM_SYNC): the kind frame, then a
 * request frame and one answer frame, as many times as the session wants. The connection is
 * opened on the first request and closed with the session.
 */
import type { SyncSession } from '../sync/sync-client.ts'
import type { FramedConnection, StreamTransport } from '../transport/stream.ts'
import { STREAM_SYNC } from '../transport/stream-kind.ts'

export function openSyncSession(streams: StreamTransport, addr: string): SyncSession {
  let conn: FramedConnection | null = null
  let frames: AsyncIterator<Uint8Array> | null = null
  let closed = false
  return {
    async request(bytes, signal) {
      if (conn === null) {
        const c = await streams.connect(addr, signal)
        if (closed) {
          c.close()
          throw new Error(`sync session with ${addr} closed`)
        }
        conn = c
        frames = conn.frames()[Symbol.asyncIterator]()
        await conn.send(new Uint8Array([STREAM_SYNC]), signal)
      }
      const c = conn
      const it = frames as AsyncIterator<Uint8Array>
      await c.send(bytes, signal)
      let onAbort: (() => void) | undefined
      const aborted = new Promise<never>((_, reject) => {
        onAbort = (): void => {
          c.close()
          reject(signal.reason instanceof Error ? signal.reason : new Error('sync aborted'))
        }
        if (signal.aborted) onAbort()
        else signal.addEventListener('abort', onAbort, { once: true })
      })
      try {
        const next = await Promise.race([it.next(), aborted])
        if (next.done === true) throw new Error(`${addr} closed the sync stream`)
        return next.value
      } finally {
        if (onAbort !== undefined) signal.removeEventListener('abort', onAbort)
      }
    },
    close() {
      closed = true
      conn?.close()
    },
  }
}
