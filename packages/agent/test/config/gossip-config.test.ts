/**
 * Goal: every membership parameter can be set under `[gossip]`: an override reaches the parsed
 * config on top of the chosen profile, a bad value fails naming its key, and `profile = "wan"`
 * changes the defaults the overrides apply to.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ConfigError, parseConfig } from '../../src/config/load-config.ts'
import { LAN_PROFILE, WAN_PROFILE, type SwimOptions } from '../../src/membership/defaults.ts'

const BASE_DIR = '/tmp/patina-config-test'

function withGossip(...lines: string[]): string {
  return ['[db]', 'path = "state.db"', '[gossip]', ...lines, ''].join('\n')
}

function rejects(toml: string, key: string): void {
  assert.throws(
    () => parseConfig(toml, BASE_DIR),
    (err: unknown) => err instanceof ConfigError && err.message.includes(`"${key}"`),
    `expected a ConfigError naming ${key}`,
  )
}

/** `probeIntervalMs` -> `probe_interval_ms`: how the file names each membership parameter. */
function snakeCase(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)
}

describe('config - [gossip] membership parameters', () => {
  it('config - without overrides the LAN profile is in effect', () => {
    const { config } = parseConfig(withGossip(), BASE_DIR)
    assert.equal(config.gossip.profile, 'lan')
    assert.deepEqual(config.gossip.swim, LAN_PROFILE)
  })

  it('config - overrides reach the config, on top of the profile', () => {
    const { config } = parseConfig(
      withGossip(
        'probe_interval_ms = 250',
        'probe_timeout_ms = 100',
        'suspicion_mult = 3',
        'gossip_nodes = 5',
        'push_pull_interval_ms = 0',
        'max_packet_bytes = 1200',
        'remove_down_after_ms = 60000',
        'nacks = false',
        'join_retry_jitter = 0.5',
      ),
      BASE_DIR,
    )
    assert.deepEqual(config.gossip.swim, {
      ...LAN_PROFILE,
      probeIntervalMs: 250,
      probeTimeoutMs: 100,
      suspicionMult: 3,
      gossipNodes: 5,
      pushPullIntervalMs: 0,
      maxPacketBytes: 1200,
      removeDownAfterMs: 60_000,
      nacks: false,
      joinRetryJitter: 0.5,
    })
    assert.ok(Object.isFrozen(config.gossip.swim))
  })

  it('config - a bad value fails naming the key', () => {
    rejects(withGossip('probe_interval_ms = 0'), 'gossip.probe_interval_ms')
    rejects(withGossip('probe_interval_ms = "1000"'), 'gossip.probe_interval_ms')
    rejects(withGossip('probe_interval_ms = 1.5'), 'gossip.probe_interval_ms')
    rejects(withGossip('indirect_checks = -1'), 'gossip.indirect_checks')
    rejects(withGossip('max_packet_bytes = 100'), 'gossip.max_packet_bytes')
    rejects(withGossip('join_retry_jitter = 2'), 'gossip.join_retry_jitter')
    rejects(withGossip('nacks = 1'), 'gossip.nacks')
    rejects(withGossip('probe_timeout_ms = 1000'), 'gossip.probe_timeout_ms')
    rejects(withGossip('probe_intervall_ms = 1000'), 'gossip.probe_intervall_ms')
  })

  it('config - the wan profile changes the defaults the overrides apply to', () => {
    const wan = parseConfig(withGossip('profile = "wan"'), BASE_DIR).config.gossip.swim
    assert.deepEqual(wan, WAN_PROFILE)
    assert.notEqual(wan.probeIntervalMs, LAN_PROFILE.probeIntervalMs)
    const tuned = parseConfig(withGossip('profile = "wan"', 'gossip_nodes = 2'), BASE_DIR).config
      .gossip.swim
    assert.deepEqual(tuned, { ...WAN_PROFILE, gossipNodes: 2 })
  })

  it('config - every membership parameter has its snake_case key', () => {
    const params = Object.entries(LAN_PROFILE) as [keyof SwimOptions, number | boolean][]
    for (const [key, value] of params) {
      // A value the key accepts that differs from the default (and keeps the pairs in order).
      const changed =
        typeof value === 'boolean'
          ? !value
          : key === 'joinRetryJitter'
            ? 0.5
            : key === 'probeTimeoutMs' || key === 'joinRetryBaseMs'
              ? value - 1
              : value + 1
      const toml = withGossip(`${snakeCase(key)} = ${String(changed)}`)
      const { swim } = parseConfig(toml, BASE_DIR).config.gossip
      assert.deepEqual(swim, { ...LAN_PROFILE, [key]: changed }, key)
    }
  })
})
