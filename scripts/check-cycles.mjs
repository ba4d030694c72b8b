#!/usr/bin/env node
// Import cycles are refused, between files and between folders (subsystems) of each package's
// src/. The graph comes from TypeScript's own pre-processor (every static import and export
// `from`, type-only ones included: a type cycle between subsystems is still a design cycle).
// Prints every cycle found and exits 1, or prints one line and exits 0. Run by `npm test`.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
// The source folders to check (relative to the repository root), or those given as arguments.
const packages =
  process.argv.length > 2
    ? process.argv.slice(2)
    : ['packages/protocol/src', 'packages/client/src', 'packages/agent/src']

function filesUnder(dir) {
  const out = []
  for (const name of readdirSync(dir)) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) out.push(...filesUnder(path))
    else if (/\.(ts|mts)$/.test(name) && !name.endsWith('.d.ts')) out.push(path)
  }
  return out
}

/** Strongly connected components with more than one node (or a self-loop): Tarjan's. */
function cycles(graph) {
  let index = 0
  const stack = []
  const onStack = new Set()
  const idx = new Map()
  const low = new Map()
  const found = []
  const visit = (v) => {
    idx.set(v, index)
    low.set(v, index)
    index++
    stack.push(v)
    onStack.add(v)
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w)
        low.set(v, Math.min(low.get(v), low.get(w)))
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v), idx.get(w)))
      }
    }
    if (low.get(v) === idx.get(v)) {
      const scc = []
      let w
      do {
        w = stack.pop()
        onStack.delete(w)
        scc.push(w)
      } while (w !== v)
      if (scc.length > 1 || (graph.get(v) ?? new Set()).has(v)) found.push(scc.sort())
    }
  }
  for (const v of graph.keys()) if (!idx.has(v)) visit(v)
  return found
}

/** One edge of each cycle, to say where to look. */
function witness(graph, scc, label) {
  const set = new Set(scc)
  return scc
    .flatMap((v) => [...(graph.get(v) ?? [])].filter((w) => set.has(w)).map((w) => `${v} -> ${w}`))
    .map((e) => `    ${label(e)}`)
}

const problems = []
for (const pkg of packages) {
  const srcDir = resolve(root, pkg)
  const files = filesUnder(srcDir)
  const fileGraph = new Map()
  const folderGraph = new Map()
  const folderEdges = new Map() // "a -> b" -> one file-level edge that makes it
  const folderOf = (file) => relative(srcDir, dirname(file)).split(sep)[0] || '.'
  for (const file of files) {
    const deps = new Set()
    const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true)
    for (const { fileName } of importedFiles) {
      if (!fileName.startsWith('.')) continue
      const target = resolve(dirname(file), fileName)
      if (!files.includes(target)) continue
      deps.add(target)
      const a = folderOf(file)
      const b = folderOf(target)
      if (a !== b && a !== '.' && b !== '.') {
        if (!folderGraph.has(a)) folderGraph.set(a, new Set())
        folderGraph.get(a).add(b)
        folderEdges.set(
          `${a} -> ${b}`,
          `${relative(srcDir, file)} imports ${relative(srcDir, target)}`,
        )
      }
    }
    fileGraph.set(file, deps)
  }
  for (const scc of cycles(fileGraph)) {
    problems.push(`${pkg}: file cycle: ${scc.map((f) => relative(srcDir, f)).join(', ')}`)
    problems.push(...witness(fileGraph, scc, (e) => e.replaceAll(`${srcDir}${sep}`, '')))
  }
  for (const scc of cycles(folderGraph)) {
    problems.push(`${pkg}: folder cycle: ${scc.join(', ')}`)
    problems.push(...witness(folderGraph, scc, (e) => `${e} (${folderEdges.get(e)})`))
  }
}

if (problems.length > 0) {
  process.stderr.write(`import cycles:\n${problems.join('\n')}\n`)
  process.exit(1)
}
process.stdout.write(`no import cycles between files or folders in ${packages.join(', ')}\n`)
