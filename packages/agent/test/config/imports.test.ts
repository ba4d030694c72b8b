/**
 * Goal: config/ stays a leaf of the agent: it imports no subsystem (crdt, replication...), so
 * that every subsystem can read its defaults from it without an import cycle. The membership
 * profiles (a module without imports) are the one exception.
 */
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'

const CONFIG_DIR = join(import.meta.dirname, '../../src/config')
const ALLOWED = new Set(['../membership/defaults.ts'])

describe('config - imports', () => {
  it('config - imports nothing from other folders of the agent but the membership profiles', () => {
    for (const file of readdirSync(CONFIG_DIR).filter((f) => f.endsWith('.ts'))) {
      const text = readFileSync(join(CONFIG_DIR, file), 'utf8')
      for (const [, path] of text.matchAll(/from '(\.\.\/[^']+)'/g)) {
        assert.ok(ALLOWED.has(path ?? ''), `${file} imports ${String(path)}`)
      }
    }
  })
})
