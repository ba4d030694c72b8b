/**
 * Goal: the exact bytes the agent writes for a fixed sample of events and error bodies stay as
 * they are (Corrosion's shapes; reals with a decimal point; integers exact; blobs as bytes), and
 * the table of error codes in docs/api.md is the one errors.ts defines.
 *
 * Method: fixed inputs, exact expected strings; the docs table is read from the file and its
 * code and status columns compared with ERROR_CODES.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import {
  changeLine,
  columnsLine,
  encodeCells,
  encodeErrorBody,
  encodeEvent,
  encodeTransactionError,
  eoqLine,
  ERROR_CODES,
  errorLine,
  notifyLine,
  rowLine,
  writeJson,
  type WireEvent,
} from '../src/index.ts'

const bytes = new Uint8Array([0, 1, 255])

const GOLDEN: [WireEvent, string][] = [
  [{ type: 'columns', columns: ['id', 'v', 'é"'] }, '{"columns":["id","v","é\\""]}\n'],
  [
    { type: 'row', rowid: 1, cells: [1n, 1, 1.5, 'one', null, bytes, 9007199254740993n] },
    '{"row":[1,[1,1.0,1.5,"one",null,[0,1,255],9007199254740993]]}\n',
  ],
  [{ type: 'eoq', time: 0.0012, changeId: null }, '{"eoq":{"time":0.0012}}\n'],
  [{ type: 'eoq', time: 0, changeId: 3 }, '{"eoq":{"time":0.0,"change_id":3}}\n'],
  [
    {
      type: 'change',
      changeType: 'update',
      rowid: 7,
      cells: [-0, 1e21, -(2n ** 63n)],
      changeId: 4,
    },
    '{"change":["update",7,[-0.0,1e+21,-9223372036854775808],4]}\n',
  ],
  [{ type: 'notify', notifyType: 'delete', pk: ['k', 2n] }, '{"notify":["delete",["k",2]]}\n'],
  [
    {
      type: 'error',
      error: 'the agent is shutting down; resume with from=1',
      code: 'AGENT_CLOSING',
    },
    '{"error":"the agent is shutting down; resume with from=1","code":"AGENT_CLOSING"}\n',
  ],
  [{ type: 'error', error: 'no code', code: null }, '{"error":"no code"}\n'],
]

describe('protocol - golden bytes', () => {
  for (const [event, line] of GOLDEN) {
    it(`protocol - ${event.type} is written exactly as ${line.trimEnd()}`, () => {
      assert.equal(encodeEvent(event), line)
    })
  }

  it('protocol - the line functions write what encodeEvent writes', () => {
    const cells = encodeCells([1n, 'x'])
    assert.equal(columnsLine(['a']), '{"columns":["a"]}\n')
    assert.equal(rowLine(2n, cells), '{"row":[2,[1,"x"]]}\n')
    assert.equal(eoqLine(1, 0), '{"eoq":{"time":1.0,"change_id":0}}\n')
    assert.equal(changeLine('insert', 3, cells, 9), '{"change":["insert",3,[1,"x"],9]}\n')
    assert.equal(notifyLine('update', cells), '{"notify":["update",[1,"x"]]}\n')
    assert.equal(errorLine('m', 'SQL_ERROR'), '{"error":"m","code":"SQL_ERROR"}\n')
  })

  it("protocol - error bodies keep Corrosion's fields and add code", () => {
    assert.equal(
      encodeErrorBody('ROUTE_NOT_FOUND', 'no such route: GET /x'),
      '{"error":"no such route: GET /x","code":"ROUTE_NOT_FOUND"}',
    )
    assert.equal(
      encodeTransactionError('SQL_ERROR', 'UNIQUE constraint failed: t.id'),
      '{"error":"UNIQUE constraint failed: t.id","code":"SQL_ERROR",' +
        '"results":[{"error":"UNIQUE constraint failed: t.id"}],"version":null}',
    )
  })

  it('protocol - writeJson never mistakes a user string for a number', () => {
    assert.equal(
      writeJson({ invalid_tables: ['__bigint__7', '"__bigint__8"'], n: 2n ** 64n }),
      '{"invalid_tables":["__bigint__7","\\"__bigint__8\\""],"n":18446744073709551616}',
    )
  })

  it('protocol - docs/api.md lists every error code with its status', () => {
    const doc = readFileSync(new URL('../../../docs/api.md', import.meta.url), 'utf8')
    const rows = [...doc.matchAll(/^\| `([A-Z_]+)` \| (\d{3}) \|/gm)].map(
      (m) => [m[1], Number(m[2])] as const,
    )
    assert.deepEqual(
      rows,
      Object.entries(ERROR_CODES).map(([code, info]) => [code, info.status] as const),
    )
  })
})
