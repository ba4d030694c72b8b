/**
 * Goal: no import cycles between files or between folders (subsystems) of any package's src/,
 * checked by scripts/check-cycles.mjs, which must also catch a cycle when there is one.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { describe, it } from 'node:test'

const ROOT = resolve(import.meta.dirname, '../../../..')
const SCRIPT = join(ROOT, 'scripts/check-cycles.mjs')

function check(...dirs: string[]): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [SCRIPT, ...dirs], { encoding: 'utf8' })
  return { status: r.status, out: r.stdout + r.stderr }
}

describe('architecture - import cycles', () => {
  it('architecture - the packages have no file or folder import cycles', () => {
    const { status, out } = check()
    assert.equal(status, 0, out)
  })

  it('architecture - a file cycle and a folder cycle are both reported', () => {
    const dir = mkdtempSync(join(tmpdir(), 'patina-cycles-'))
    try {
      mkdirSync(join(dir, 'a'))
      mkdirSync(join(dir, 'b'))
      writeFileSync(join(dir, 'a/x.ts'), "import { y } from './y.ts'\nexport const x = y\n")
      writeFileSync(join(dir, 'a/y.ts'), "import type { z } from '../b/z.ts'\nexport const y = 1\n")
      writeFileSync(join(dir, 'b/z.ts'), "export { x } from '../a/x.ts'\nexport type z = 1\n")
      writeFileSync(join(dir, 'a/w.ts'), "import { v } from './v.ts'\nexport const w = v\n")
      writeFileSync(join(dir, 'a/v.ts'), "import { w } from './w.ts'\nexport const v = w\n")
      const { status, out } = check(dir)
      assert.equal(status, 1, out)
      assert.match(out, /file cycle: a\/v\.ts, a\/w\.ts/)
      assert.match(out, /folder cycle: a, b/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
