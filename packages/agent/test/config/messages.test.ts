/**
 * Goal: a config with a value of the wrong type or form fails with a message that names the key,
 * the expected form and what the file has (zod's "Invalid input" never reaches the user); a valid
 * config that is probably a mistake (no schema) starts with a warning naming the key; the API's
 * timeout keys have their defaults and are checked against each other.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  API_HEADERS_TIMEOUT_MS,
  API_KEEP_ALIVE_TIMEOUT_MS,
  API_REQUEST_TIMEOUT_MS,
} from '../../src/config/defaults.ts'
import { ConfigError, parseConfig } from '../../src/config/load-config.ts'

const BASE_DIR = '/tmp/patina-config-test'
const HOST_PORT = 'expected "host:port" (a string such as "127.0.0.1:8080" or "[::1]:8080")'

function toml(...lines: string[]): string {
  return ['[db]', 'path = "state.db"', 'schema_paths = ["schema.sql"]', ...lines, ''].join('\n')
}

/** The whole message of the ConfigError the text fails with. */
function errorOf(text: string): string {
  try {
    parseConfig(text, BASE_DIR, 'config.toml')
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`)
    return err.message
  }
  assert.fail('expected the config to be refused')
}

describe('config - messages', () => {
  it('config - an address given as a number names the key and the "host:port" form', () => {
    assert.equal(
      errorOf(toml('[api]', 'addr = 8080')),
      `config.toml: config key "api.addr": ${HOST_PORT} or a list of them, got the number 8080`,
    )
    assert.equal(
      errorOf(toml('[gossip]', 'addr = 8787')),
      `config.toml: config key "gossip.addr": ${HOST_PORT}, got the number 8787`,
    )
    assert.equal(
      errorOf(toml('[telemetry]', 'prometheus.addr = 9090')),
      `config.toml: config key "telemetry.prometheus.addr": ${HOST_PORT}, got the number 9090`,
    )
  })

  it('config - a bad entry of an address list names the entry', () => {
    assert.equal(
      errorOf(toml('[api]', 'addr = ["127.0.0.1:8080", 8081]')),
      `config.toml: config key "api.addr[1]": ${HOST_PORT}, got the number 8081`,
    )
    assert.equal(
      errorOf(toml('[gossip]', 'bootstrap = ["10.0.0.2:8787", "10.0.0.3"]')),
      `config.toml: config key "gossip.bootstrap[1]": ${HOST_PORT}, got the string "10.0.0.3"`,
    )
    assert.equal(
      errorOf(toml('[gossip]', 'bootstrap = "10.0.0.2:8787"')),
      'config.toml: config key "gossip.bootstrap": expected a list, got the string "10.0.0.2:8787"',
    )
    assert.equal(
      errorOf(toml('[api]', 'addr = []')),
      'config.toml: config key "api.addr": expected at least 1 entry, got an empty list',
    )
    assert.equal(
      errorOf(toml('[api]', 'addr = "localhost"')),
      `config.toml: config key "api.addr": ${HOST_PORT}, got the string "localhost"`,
    )
  })

  it('config - every other type error names the key, the expected type and the value', () => {
    const cases: [string[], string][] = [
      [
        ['[api]', 'max_body_bytes = "16MiB"'],
        'config key "api.max_body_bytes": expected a number, got the string "16MiB"',
      ],
      [
        ['[api]', 'max_body_bytes = 1.5'],
        'config key "api.max_body_bytes": expected an integer, got the number 1.5',
      ],
      [
        ['[api]', 'max_statements = 0'],
        'config key "api.max_statements": expected a number > 0, got the number 0',
      ],
      [
        ['[gossip]', 'nacks = 1'],
        'config key "gossip.nacks": expected true or false, got the number 1',
      ],
      [
        ['[gossip]', 'profile = "metro"'],
        'config key "gossip.profile": expected one of "lan", "wan", got the string "metro"',
      ],
      [
        ['[gossip]', 'cluster_id = 70000'],
        'config key "gossip.cluster_id": expected a number <= 65535, got the number 70000',
      ],
      [
        ['[api.authz]', 'bearer-token = 5'],
        'config key "api.authz.bearer-token": expected a string, got the number 5',
      ],
      [['api = "127.0.0.1:8080"'], 'config key "db.api"'],
      [['[subscriptions]', 'max_history = true'], 'expected a number, got the boolean true'],
      [['[log]', 'format = ["json"]'], 'expected one of "plaintext", "json", got a list'],
      [['[api]', 'query_timeout_ms = { ms = 1 }'], 'expected a number, got a table'],
    ]
    for (const [lines, expected] of cases) {
      const message = errorOf(toml(...lines))
      assert.ok(message.includes(expected), `${lines.join(' ')}: ${message}`)
      assert.ok(!message.includes('Invalid input'), message)
    }
    assert.equal(
      errorOf('[db]\nschema_paths = []\n'),
      'config.toml: config key "db.path" is required',
    )
  })

  it('config - a missing or empty db.schema_paths starts with a warning naming the key', () => {
    for (const text of [
      '[db]\npath = "state.db"\n',
      '[db]\npath = "state.db"\nschema_paths = []\n',
    ]) {
      const { config, warnings } = parseConfig(text, BASE_DIR)
      assert.deepEqual(config.db.schemaPaths, [])
      assert.deepEqual(
        warnings.map((w) => w.key),
        ['db.schema_paths'],
      )
      assert.match(warnings.map((w) => w.message).join('\n'), /"db\.schema_paths".*no tables/)
    }
    assert.deepEqual(parseConfig(toml(), BASE_DIR).warnings, [])
  })

  it('config - API timeouts: defaults, overrides, headers at most the request timeout', () => {
    const { config } = parseConfig(toml(), BASE_DIR)
    assert.equal(config.api.headersTimeoutMs, API_HEADERS_TIMEOUT_MS)
    assert.equal(config.api.requestTimeoutMs, API_REQUEST_TIMEOUT_MS)
    assert.equal(config.api.keepAliveTimeoutMs, API_KEEP_ALIVE_TIMEOUT_MS)
    const set = parseConfig(
      toml(
        '[api]',
        'headers_timeout_ms = 100',
        'request_timeout_ms = 200',
        'keep_alive_timeout_ms = 300',
      ),
      BASE_DIR,
    ).config.api
    assert.deepEqual(
      [set.headersTimeoutMs, set.requestTimeoutMs, set.keepAliveTimeoutMs],
      [100, 200, 300],
    )
    assert.match(
      errorOf(toml('[api]', 'headers_timeout_ms = 2000', 'request_timeout_ms = 1000')),
      /config key "api\.headers_timeout_ms": must not exceed request_timeout_ms \(2000 > 1000\)$/,
    )
    assert.match(
      errorOf(toml('[api]', 'keep_alive_timeout_ms = 0')),
      /"api\.keep_alive_timeout_ms": expected a number > 0, got the number 0$/,
    )
  })
})
