/**
 * A TCP proxy on 127.0.0.1 in front of a real agent, whose connections a test can cut: the
 * client sees a real disconnect and reconnects through the proxy to the same agent.
 */
import { connect, createServer, type Socket } from 'node:net'

export interface Proxy {
  readonly url: string
  cut(): void
  close(): Promise<void>
}

export async function proxy(target: string): Promise<Proxy> {
  const t = new URL(target)
  const pairs = new Set<[Socket, Socket]>()
  const server = createServer((client) => {
    const upstream = connect(Number(t.port), t.hostname)
    const pair: [Socket, Socket] = [client, upstream]
    pairs.add(pair)
    const drop = (): void => {
      client.destroy()
      upstream.destroy()
      pairs.delete(pair)
    }
    client.on('error', drop).on('close', drop)
    upstream.on('error', drop).on('close', drop)
    client.pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  const cut = (): void => {
    for (const [a, b] of pairs) {
      a.destroy()
      b.destroy()
    }
    pairs.clear()
  }
  return {
    url: `http://127.0.0.1:${port}`,
    cut,
    close: () =>
      new Promise<void>((resolve) => {
        cut()
        server.close(() => {
          resolve()
        })
      }),
  }
}
