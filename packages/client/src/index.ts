/**
 * @packageDocumentation
 * Typed client for the Patina agent's HTTP API (Corrosion's v1 API). Built on fetch; no
 * native or runtime dependencies; runs in Node (20.19+) and in browsers.
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
export {
  createClient,
  PatinaClient,
  type ClientOptions,
  type EventsRequest,
  type EventsStream,
  type StatementResult,
  type SubscribeOptions,
  type TransactionResult,
} from './client.ts'
export {
  AbortError,
  ClientClosedError,
  ConnectionError,
  InvalidStatementError,
  OutcomeUnknownError,
  PatinaError,
  PatinaHttpError,
  ProtocolError,
  QueryError,
  ResumeError,
  SubscriptionGoneError,
  TimeoutError,
  TransactionError,
  type EndpointFailure,
  type FailedStatementResult,
} from './errors.ts'
export type { NamedParams, PositionalParams, Statement } from './statements.ts'
export { Subscription, type ChangeType, type SubscriptionEvent } from './subscription.ts'
export type { CallOptions, ClientEvent } from './transport.ts'
export { UpdateStream, type UpdateEvent } from './updates.ts'
export { real, Real, type IntegerMode, type ParamValue, type Row, type SqlValue } from './values.ts'
export type { JsonValue, WireEvent } from '@patina/protocol'
