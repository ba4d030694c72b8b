/**
 * Goal: every error class has the stable `code` and the `name` docs/client.md lists, keeps its
 * `cause`, and is a PatinaError, so callers can switch on `code` or use `instanceof`.
 *
 * Method: construct each class directly and read its fields and its stack's first line.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
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
} from '../src/index.ts'

describe('errors', () => {
  it('errors - each class has its code, its name and its cause', () => {
    const cause = new Error('root')
    const where = { id: 'i', agent: 'http://a', lastChangeId: 1, attempts: 3 }
    const cases: [PatinaError, string, string][] = [
      [
        new PatinaHttpError(503, 'busy', 'http://a', 1000, { cause }),
        'PatinaHttpError',
        'UNAVAILABLE',
      ],
      [
        new TransactionError(400, 'UNIQUE', 'http://a', [{ error: 'UNIQUE' }], { cause }),
        'TransactionError',
        'TRANSACTION_FAILED',
      ],
      [new ConnectionError('down', [], { cause }), 'ConnectionError', 'CONNECTION_FAILED'],
      [
        new OutcomeUnknownError('lost', 'http://a', { cause }),
        'OutcomeUnknownError',
        'OUTCOME_UNKNOWN',
      ],
      [new TimeoutError('slow', { cause }), 'TimeoutError', 'TIMEOUT'],
      [new AbortError('stop', { cause }), 'AbortError', 'ABORTED'],
      [new ClientClosedError('closed', { cause }), 'ClientClosedError', 'CLIENT_CLOSED'],
      [new InvalidStatementError('bad', { cause }), 'InvalidStatementError', 'INVALID_STATEMENT'],
      [new QueryError('failed', 'http://a', { cause }), 'QueryError', 'QUERY_FAILED'],
      [new ProtocolError('odd', { cause }), 'ProtocolError', 'PROTOCOL_ERROR'],
      [
        new SubscriptionGoneError('gone', 'i', 1, { cause }),
        'SubscriptionGoneError',
        'SUBSCRIPTION_GONE',
      ],
      [new ResumeError('gave up', where, { cause }), 'ResumeError', 'RESUME_FAILED'],
    ]
    for (const [err, name, code] of cases) {
      assert.ok(err instanceof PatinaError && err instanceof Error)
      assert.equal(err.name, name)
      assert.equal(err.code, code)
      assert.equal(err.cause, cause)
      assert.ok(err.stack?.startsWith(`${name}: `), err.stack)
    }
  })

  it('errors - HTTP statuses map to stable codes', () => {
    const codes = [400, 401, 404, 405, 408, 413, 415, 500, 502, 503, 504, 418].map(
      (s) => new PatinaHttpError(s, 'm', 'http://a').code,
    )
    assert.deepEqual(codes, [
      'BAD_REQUEST',
      'UNAUTHORIZED',
      'NOT_FOUND',
      'METHOD_NOT_ALLOWED',
      'QUERY_TIMEOUT',
      'BODY_TOO_LARGE',
      'UNSUPPORTED_MEDIA_TYPE',
      'AGENT_ERROR',
      'BAD_GATEWAY',
      'UNAVAILABLE',
      'GATEWAY_TIMEOUT',
      'HTTP_418',
    ])
  })
})
