/**
 * Reading a subscription's stream without HTTP: the manager's own generator, consumed in
 * process, applied to a StreamState. For property tests, where sockets would only add time.
 */
import { LineSplitter } from '@patina/protocol'
import { parseJson } from '../../src/api/json.ts'
import type { Statement } from '../../src/crdt/replica.ts'
import type { Connection, OpenedStream, Subscriptions } from '../../src/subs/subscriptions.ts'
import { StreamState } from './harness.ts'

const encoder = new TextEncoder()

export function testConnection(): Connection & { readonly abort: () => void } {
  const closed = new AbortController()
  const closing = new AbortController()
  return {
    signal: closed.signal,
    closing: closing.signal,
    destroy: () => {
      closed.abort()
    },
    bufferedBytes: () => 0,
    abort: () => {
      closed.abort()
    },
  }
}

export class Follower {
  readonly state = new StreamState()
  private readonly splitter = new LineSplitter()
  readonly stream: OpenedStream

  private constructor(stream: OpenedStream) {
    this.stream = stream
  }

  static async subscribe(subs: Subscriptions, statement: Statement): Promise<Follower> {
    return new Follower(await subs.subscribe(statement, {}, testConnection()))
  }

  /** The subscription's last change id, as the manager reports it. */
  lastChange(subs: Subscriptions): number {
    const info = subs.list().find((s) => s.id === this.stream.id)
    if (info === undefined) throw new Error(`subscription ${this.stream.id} is gone`)
    return info.changeId
  }

  /** Reads events until the state is at the subscription's last change id. */
  async catchUp(subs: Subscriptions): Promise<void> {
    const target = this.lastChange(subs)
    while (!this.state.eoq || this.state.changeId < target) {
      const r = await this.stream.lines.next()
      if (r.done === true) throw new Error('the stream ended')
      // The generator yields text; the splitter takes the bytes a socket would carry.
      for (const line of this.splitter.push(encoder.encode(r.value))) {
        this.state.apply(parseJson(line))
      }
    }
  }

  async close(): Promise<void> {
    await this.stream.lines.return(undefined)
    this.stream.close()
  }
}
