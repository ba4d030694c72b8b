/** Every limit of the client, with what happens when it is hit. All are client options. */

/** Per attempt: no response headers within this long -> the attempt fails (`TimeoutError`). */
export const REQUEST_TIMEOUT_MS = 30_000

/**
 * Attempts per call across agents, unless `retry.attempts` says otherwise: this many, or one
 * per agent if there are more. Each agent is tried once before any is tried again. When every
 * attempt failed the call throws (ConnectionError, or the last agent's error).
 */
export const RETRY_ATTEMPTS = 3
/** First retry wait once every agent has been tried; doubled per attempt, full jitter. */
export const RETRY_BASE_DELAY_MS = 100
/** Cap of a retry wait, including a wait a 503's Retry-After asks for. */
export const RETRY_MAX_DELAY_MS = 2_000

/**
 * A subscription resumes after a disconnect this many times in a row (the count resets once a
 * resumed stream delivers an event); then it throws ResumeError.
 */
export const RESUME_ATTEMPTS = 10
/** First resume wait; doubled per attempt, full jitter. */
export const RESUME_BASE_DELAY_MS = 250
/** Cap of a resume wait. With the defaults the client gives up after about 25 s of failures. */
export const RESUME_MAX_DELAY_MS = 5_000

/**
 * An agent that failed is passed over for this long (doubled per consecutive failure, up to
 * ENDPOINT_DOWN_MAX_MS) while others are up; a Retry-After overrides it.
 */
export const ENDPOINT_DOWN_BASE_MS = 1_000
export const ENDPOINT_DOWN_MAX_MS = 30_000

/** An NDJSON line longer than this ends the stream with ProtocolError (a runaway answer). */
export const MAX_LINE_CHARS = 64 * 1024 * 1024
