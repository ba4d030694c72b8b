// Runs every *.test.ts under packages/*/test with node:test through tsx.
// Node 20's --test does not expand globs, so the files are listed here.
import { spawnSync } from 'node:child_process'
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'

function find(dir, out) {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'fixtures') continue
    const path = join(dir, name)
    if (statSync(path).isDirectory()) find(path, out)
    else if (name.endsWith('.test.ts')) out.push(path)
  }
  return out
}

const files = []
for (const pkg of readdirSync('packages')) {
  try {
    find(join('packages', pkg, 'test'), files)
  } catch {
    // A package without a test folder has nothing to run.
  }
}
files.sort()
const args = [
  '--enable-source-maps',
  '--import',
  'tsx',
  '--test',
  ...process.argv.slice(2),
  ...files,
]
const result = spawnSync(process.execPath, args, { stdio: 'inherit' })
process.exit(result.status ?? 1)
