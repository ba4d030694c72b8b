/**
 * @packageDocumentation
 * Typed client for the Patina agent's HTTP API: the entry for browsers and every runtime but
 * Node (package.json "browser" and "default" conditions). Requests go through fetch; nothing
 * here imports a `node:` module or undici (test/browser-entry.test.ts checks it). The API is the
 * same as the Node entry's (index.ts); docs/client.md has the guide.
 */
import { PatinaClient, type ClientOptions } from './client.ts'

export * from './api.ts'

/**
 * Makes a client of one or more agents; its requests go through `options.fetch`, or the global
 * fetch.
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
  return new PatinaClient(options)
}
