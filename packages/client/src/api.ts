/**
 * Everything the package exports, except `createClient`, which each entry defines: index.ts
 * (Node: a keep-alive connection pool) and browser.ts (everywhere else: fetch).
 */
export {
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
