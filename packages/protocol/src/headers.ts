/** HTTP header names and media types of the API (lowercase, as Node and fetch give them). */

/** Response header of the subscription routes and `POST /v1/updates/:table`: the stream's id. */
export const QUERY_ID_HEADER = 'corro-query-id'
/** On a 503 (`OVERLOADED`, `AGENT_CLOSING`): seconds to wait before retrying. */
export const RETRY_AFTER_HEADER = 'retry-after'
/** On a 405: the methods the route takes. */
export const ALLOW_HEADER = 'allow'
/** On a 401: the scheme the agent wants (`Bearer`). */
export const WWW_AUTHENTICATE_HEADER = 'www-authenticate'
/** Request header with the bearer token (`Bearer <token>`). */
export const AUTHORIZATION_HEADER = 'authorization'

/** Request and response bodies (JSON). */
export const JSON_TYPE = 'application/json'
/** Streams: one JSON object per line (events.ts). */
export const NDJSON_TYPE = 'application/x-ndjson'
