/**
 * Free TCP ports on 127.0.0.1 for tests that start real agents: listen on port 0, read the port,
 * close. The one port picker of the tests (the agent's, the e2e and the admin tests).
 */
import { createServer } from 'node:net'

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => {
        resolve(port)
      })
    })
  })
}

/** `count` distinct free ports (the kernel may hand the same one out twice in a row). */
export async function freePorts(count: number): Promise<number[]> {
  const ports: number[] = []
  while (ports.length < count) {
    const p = await freePort()
    if (!ports.includes(p)) ports.push(p)
  }
  return ports
}
