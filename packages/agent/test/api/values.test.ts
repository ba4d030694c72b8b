/**
 * Goal: values cross the API exactly, in both directions: integers of any 64-bit size (beyond
 * 2^53 too) are parsed and written exactly in the JSON text; reals keep a decimal point or
 * exponent so 1.0 (REAL) and 1 (INTEGER) stay different; blobs travel as arrays of bytes; text
 * keeps every character.
 *
 * Method: request bodies are written by hand as JSON text (JavaScript's JSON.stringify would
 * round the big integers first), stored through /v1/transactions, checked with typeof() on the
 * writer, and read back through /v1/queries. The assertions are on the raw response TEXT, since
 * JSON.parse would lose exactly what is being tested.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { ndjsonLines, openApi, postText, queryText, type ApiHarness } from './harness.ts'

let h: ApiHarness
before(async () => {
  h = await openApi()
})
after(async () => {
  await h.close()
})

async function write(text: string): Promise<void> {
  const res = await postText(h, '/v1/transactions', text)
  assert.equal(res.statusCode, 200, res.body)
}

/** The `row` lines of a query answer, as text. */
async function rowLines(body: unknown): Promise<string[]> {
  return ndjsonLines(await queryText(h, body)).filter((l) => l.startsWith('{"row":'))
}

describe('api - exact values', () => {
  it('api - an integer beyond 2^53 is stored and read back exactly', async () => {
    await write('[["INSERT INTO t (id, x) VALUES (1, ?)", [9007199254740993]]]')
    assert.deepEqual(h.replica.query('SELECT x, typeof(x) AS t FROM t WHERE id = 1'), [
      { x: 9007199254740993n, t: 'integer' },
    ])
    const text = await queryText(h, ['SELECT x FROM t WHERE id = ?', [1]])
    assert.ok(text.includes('9007199254740993'), text)
    assert.deepEqual(await rowLines(['SELECT x FROM t WHERE id = ?', [1]]), [
      '{"row":[1,[9007199254740993]]}',
    ])
    // Also as a key and as a named parameter.
    await write('[["INSERT INTO t (id, v) VALUES (:id, \'big key\')", {"id": 9007199254740995}]]')
    assert.deepEqual(await rowLines('SELECT id, v FROM t WHERE id > 9007199254740993'), [
      '{"row":[1,[9007199254740995,"big key"]]}',
    ])
  })

  it('api - the 64-bit limits round-trip', async () => {
    await write(
      '[["INSERT INTO t (id, x) VALUES (?, ?)", [2, -9223372036854775808]],' +
        ' ["INSERT INTO t (id, x) VALUES (?, ?)", [3, 9223372036854775807]],' +
        ' {"query": "INSERT INTO t (id, x) VALUES (:id, :x)",' +
        '  "named_params": {":id": -9223372036854775807, "x": 9223372036854775806}}]',
    )
    assert.deepEqual(
      h.replica.query('SELECT id, x, typeof(x) AS t FROM t WHERE id IN (2, 3) ORDER BY id'),
      [
        { id: 2n, x: -9223372036854775808n, t: 'integer' },
        { id: 3n, x: 9223372036854775807n, t: 'integer' },
      ],
    )
    const lines = await rowLines(
      'SELECT id, x FROM t WHERE id IN (2, 3, -9223372036854775807) ORDER BY id',
    )
    assert.deepEqual(lines, [
      '{"row":[1,[-9223372036854775807,9223372036854775806]]}',
      '{"row":[2,[2,-9223372036854775808]]}',
      '{"row":[3,[3,9223372036854775807]]}',
    ])
  })

  it('api - REAL 1.0 and INTEGER 1 stay different in an untyped column', async () => {
    await write(
      '[["INSERT INTO t (id, x) VALUES (?, ?)", [4, 1.0]],' +
        ' ["INSERT INTO t (id, x) VALUES (?, ?)", [5, 1]],' +
        ' ["INSERT INTO t (id, x) VALUES (?, ?)", [6, -0.5]],' +
        ' ["INSERT INTO t (id, x) VALUES (?, ?)", [7, 1e300]],' +
        ' ["INSERT INTO t (id, x) VALUES (?, ?)", [8, 2E3]]]',
    )
    assert.deepEqual(
      h.replica.query('SELECT id, x, typeof(x) AS t FROM t WHERE id BETWEEN 4 AND 8 ORDER BY id'),
      [
        { id: 4n, x: 1, t: 'real' },
        { id: 5n, x: 1n, t: 'integer' },
        { id: 6n, x: -0.5, t: 'real' },
        { id: 7n, x: 1e300, t: 'real' },
        { id: 8n, x: 2000, t: 'real' },
      ],
    )
    const lines = await rowLines('SELECT x FROM t WHERE id BETWEEN 4 AND 8 ORDER BY id')
    assert.deepEqual(lines, [
      '{"row":[1,[1.0]]}',
      '{"row":[2,[1]]}',
      '{"row":[3,[-0.5]]}',
      '{"row":[4,[1e+300]]}',
      '{"row":[5,[2000.0]]}',
    ])
    // Every line is still valid JSON.
    for (const l of lines) JSON.parse(l)
  })

  it('api - an integer written to a REAL column reads back as a real', async () => {
    await write('[["INSERT INTO t (id, r) VALUES (?, ?)", [9, 2]]]')
    assert.deepEqual(await rowLines('SELECT r, typeof(r) FROM t WHERE id = 9'), [
      '{"row":[1,[2.0,"real"]]}',
    ])
  })

  it('api - computed values keep their types too', async () => {
    assert.deepEqual(
      await rowLines(
        'SELECT 9223372036854775807, -9223372036854775808, 1.0, 3, 0.1, 10 / 4, 10 / 4.0, NULL',
      ),
      ['{"row":[1,[9223372036854775807,-9223372036854775808,1.0,3,0.1,2,2.5,null]]}'],
    )
  })

  it('api - blobs travel as arrays of bytes', async () => {
    await write(
      '[["INSERT INTO t (id, b) VALUES (?, ?)", [10, [0, 1, 127, 128, 254, 255]]],' +
        ' ["INSERT INTO t (id, b) VALUES (?, ?)", [11, []]]]',
    )
    assert.deepEqual(h.replica.query('SELECT b, typeof(b) AS t FROM t WHERE id = 10'), [
      { b: Buffer.from([0, 1, 127, 128, 254, 255]), t: 'blob' },
    ])
    assert.deepEqual(await rowLines('SELECT b FROM t WHERE id IN (10, 11) ORDER BY id'), [
      '{"row":[1,[[0,1,127,128,254,255]]]}',
      '{"row":[2,[[]]]}',
    ])
    assert.deepEqual(await rowLines("SELECT x'00ff10', zeroblob(2)"), [
      '{"row":[1,[[0,255,16],[0,0]]]}',
    ])
  })

  it('api - text keeps every character', async () => {
    const text = 'quote " backslash \\ newline \n tab \t nul-free unicode é 🦀 \u2028 end'
    await write(JSON.stringify([['INSERT INTO t (id, v) VALUES (?, ?)', [12, text]]]))
    assert.deepEqual(h.replica.query('SELECT v FROM t WHERE id = 12'), [{ v: text }])
    const [line] = await rowLines('SELECT v FROM t WHERE id = 12')
    assert.deepEqual(JSON.parse(line ?? ''), { row: [1, [text]] })
  })
})
