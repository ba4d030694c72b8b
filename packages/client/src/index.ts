/**
 * @packageDocumentation
 * Typed client for the Patina agent's HTTP API (Corrosion's v1 API). Runs in Node (20.19+)
 * and in browsers. This is the Node entry (package.json "node" condition): requests go over a
 * keep-alive connection pool of undici's; browser.ts, the entry for everything else, uses
 * fetch. Both export the same API.
 *
 * ```ts
 * import { createClient } from '@patina/client'
 *
 * await using client = createClient({ urls: ['http://127.0.0.1:8080', 'http://127.0.0.1:8081'] })
 * await client.transaction([['INSERT INTO machines (id, cpus) VALUES (?, ?)', ['m1', 4]]])
 * for await (const m of client.query<{ id: string; cpus: number }>('SELECT id, cpus FROM machines')) {
 *   console.log(m.id, m.cpus)
 * }
 * await using sub = await client.subscribe<{ id: string }>('SELECT id FROM machines')
 * for await (const event of sub) console.log(event)
 * ```
 *
 * docs/client.md has the full guide: decoding rules, failover rules, errors.
 */
import { PatinaClient, type ClientOptions } from './client.ts'
import { nodeHttp } from './node/http.ts'

export * from './api.ts'

/**
 * Makes a client of one or more agents. In Node its requests go over a keep-alive connection
 * pool of its own (undici), unless `options.fetch` is given; `close()` closes the pool.
 *
 * ### Examples
 * ```ts
 * import { createClient } from '@patina/client'
 *
 * await using client = createClient({ urls: ['http://10.0.0.1:8080', 'http://10.0.0.2:8080'] })
 * const { version } = await client.transaction([['INSERT INTO t (id) VALUES (?)', [1]]])
 * for await (const row of client.query<{ id: number }>('SELECT id FROM t')) console.log(row.id)
 * ```
 */
export function createClient(options: ClientOptions): PatinaClient {
  return new PatinaClient(options, nodeHttp)
}
