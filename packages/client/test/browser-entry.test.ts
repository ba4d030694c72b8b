/**
 * Goal: the package's browser entry (package.json "browser" and "default" conditions) never
 * reaches a `node:` module, a Node built-in or undici, so bundling the client for a browser
 * pulls in none of them; the Node entry ("node" condition) is the one with the pooled transport.
 *
 * Method: the built package (dist, as `tsc -b` leaves it). Every module reachable from an
 * entry is read and its static and dynamic imports followed, into @patina/protocol too; the
 * same scan of the Node entry must find undici, or the scan proves nothing. When esbuild is
 * installed (tsx brings it), the entry is also bundled for `platform: 'browser'`, which fails
 * on any Node built-in.
 */
import assert from 'node:assert/strict'
import { readFileSync, realpathSync } from 'node:fs'
import { builtinModules } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'

const CLIENT = fileURLToPath(new URL('..', import.meta.url))
const ROOT = resolve(CLIENT, '../..')

type Conditions = string | { readonly [condition: string]: Conditions }

interface PackageJson {
  readonly exports?: { readonly '.': Conditions }
  readonly main?: string
}

/** The file `exports["."]` gives under `conditions` (first match in the object's order). */
function pick(target: Conditions, conditions: readonly string[]): string {
  if (typeof target === 'string') return target
  for (const [key, value] of Object.entries(target)) {
    if (key === 'types') continue
    if (conditions.includes(key) || key === 'default') return pick(value, conditions)
  }
  throw new Error(`no export for ${conditions.join(', ')}`)
}

function entryOf(packageDir: string, conditions: readonly string[]): string {
  const pkg = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8')) as PackageJson
  const target = pkg.exports?.['.'] ?? pkg.main
  if (target === undefined) throw new Error(`${packageDir}: no entry`)
  return join(packageDir, pick(target, conditions))
}

/** Module specifiers imported (statically or dynamically) by JavaScript source `code`. */
export function importsOf(code: string): string[] {
  const stripped = code.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '')
  const out: string[] = []
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(["'])([^"'\s(),;]+)\1/g
  for (const m of stripped.matchAll(re)) out.push(m[2] as string)
  return out
}

const NODE_BUILTINS = new Set(builtinModules)

/**
 * Every module file reachable from `entry` under `conditions`, and every import of a Node
 * built-in or of a package outside the workspace (`external`), as "<importer>: <specifier>".
 */
function graph(entry: string, conditions: readonly string[]) {
  const files = new Set<string>()
  const external: string[] = []
  const todo = [entry]
  for (let file = todo.pop(); file !== undefined; file = todo.pop()) {
    if (files.has(file)) continue
    files.add(file)
    for (const spec of importsOf(readFileSync(file, 'utf8'))) {
      const where = `${file.slice(ROOT.length + 1)}: ${spec}`
      if (spec.startsWith('.')) {
        todo.push(resolve(dirname(file), spec))
      } else if (spec.startsWith('node:') || NODE_BUILTINS.has(spec.split('/')[0] ?? spec)) {
        external.push(where)
      } else if (spec.startsWith('@patina/')) {
        todo.push(entryOf(realpathSync(join(ROOT, 'node_modules', spec)), conditions))
      } else {
        external.push(where)
      }
    }
  }
  return { files, external }
}

/** What the test uses of esbuild's API. */
interface Esbuild {
  build(options: Record<string, unknown>): Promise<{
    readonly metafile: { readonly inputs: Record<string, unknown> }
  }>
}

describe('the browser entry', () => {
  it('package.json sends browsers and other runtimes to dist/browser.js, Node to dist/index.js', () => {
    assert.equal(entryOf(CLIENT, ['browser', 'import']), join(CLIENT, 'dist/browser.js'))
    assert.equal(entryOf(CLIENT, ['worker', 'import']), join(CLIENT, 'dist/browser.js'))
    assert.equal(entryOf(CLIENT, ['node', 'import']), join(CLIENT, 'dist/index.js'))
  })

  it('reaches no node: module, Node built-in or undici; the Node entry does reach undici', () => {
    const browser = graph(entryOf(CLIENT, ['browser', 'import']), ['browser', 'import'])
    assert.deepEqual(browser.external, [])
    assert.ok(browser.files.has(join(CLIENT, 'dist/client.js')))
    assert.ok(browser.files.has(join(ROOT, 'packages/protocol/dist/index.js')))
    const node = graph(entryOf(CLIENT, ['node', 'import']), ['node', 'import'])
    assert.ok(
      node.external.some((e) => e.endsWith(': undici')),
      `the scan of the Node entry found no undici: ${node.external.join('; ')}`,
    )
    assert.ok(node.external.some((e) => e.endsWith(': node:events')))
  })

  it('bundles for the browser with esbuild (when installed): no undici, no Node built-in', async (t) => {
    let esbuild: Esbuild
    try {
      // Not a dependency of this package (tsx brings it): looked up at run time, untyped.
      const name = 'esbuild'
      esbuild = (await import(name)) as Esbuild
    } catch {
      t.skip('esbuild is not installed')
      return
    }
    const result = await esbuild.build({
      stdin: {
        contents: "export { createClient, PatinaClient } from '@patina/client'",
        resolveDir: ROOT,
        loader: 'js',
      },
      bundle: true,
      platform: 'browser',
      format: 'esm',
      write: false,
      metafile: true,
      logLevel: 'silent',
    })
    const inputs = Object.keys(result.metafile.inputs)
    assert.ok(
      inputs.some((i) => i.endsWith('packages/client/dist/browser.js')),
      inputs.join('\n'),
    )
    assert.deepEqual(
      inputs.filter((i) => i.includes('undici') || i.includes('/node/')),
      [],
    )
  })
})
