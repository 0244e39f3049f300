import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import * as encoding from 'lib0/encoding'
import * as prng from 'lib0/prng'
import { TandemError } from '../protocol/errors.ts'
import { ItemRef, validateStateVector, validateUpdate } from '../server/rooms/update-validator.ts'

// biome-ignore lint/suspicious/noExplicitAny: Yjs's shared types are invariant in their event type; any is their one common supertype
type AnyType = Y.AbstractType<any>

const SEED = 20240611

// ---- a seeded corpus of real updates ----------------------------------------------------------

interface Sample {
  name: string
  update: Uint8Array
}

const randomAny = (gen: prng.PRNG, depth = 0): unknown => {
  switch (prng.int32(gen, 0, depth > 2 ? 5 : 8)) {
    case 0:
      return prng.int32(gen, -1e6, 1e6)
    case 1:
      return prng.real53(gen) * 1e9
    case 2:
      return prng.utf16String(gen, 8)
    case 3:
      return null
    case 4:
      return prng.bool(gen)
    case 5:
      return prng.word(gen, 0, 6)
    case 6:
      return { a: randomAny(gen, depth + 1), u: undefined, bin: prng.uint8Array(gen, 3) }
    case 7:
      return [randomAny(gen, depth + 1), randomAny(gen, depth + 1)]
    default:
      return { [prng.word(gen, 1, 4)]: [randomAny(gen, depth + 1)] }
  }
}

/** Something to put in an array or map: plain values, binary, a nested type, or a subdocument. */
const randomContent = (gen: prng.PRNG, forMap: boolean): unknown => {
  switch (prng.int32(gen, 0, forMap ? 13 : 11)) {
    case 0:
      return prng.uint8Array(gen, prng.int32(gen, 0, 6))
    case 1:
      return new Y.Map()
    case 2:
      return new Y.Array()
    case 3:
      return new Y.Text(prng.word(gen, 1, 5))
    case 4:
      return new Y.XmlElement(prng.oneOf(gen, ['p', 'div', 'h1']))
    case 5:
      return new Y.XmlText(prng.word(gen, 1, 5))
    case 6:
      return new Y.XmlFragment()
    case 7:
      return new Y.XmlHook(`hook-${prng.word(gen, 1, 3)}`)
    case 8:
      return new Y.Doc({ autoLoad: prng.bool(gen), gc: prng.bool(gen), meta: { title: prng.word(gen) } })
    case 12:
      return undefined
    case 13:
      return BigInt(prng.int32(gen, -1000, 1000))
    default:
      return randomAny(gen)
  }
}

const attrs = (gen: prng.PRNG): Record<string, unknown> =>
  prng.oneOf(gen, [{ bold: true }, { bold: null }, { color: `#${prng.word(gen, 3, 3)}` }, { link: { href: 'x' } }])

/** Every shared type reachable from the roots, so edits also land in nested types. */
const allTypes = (doc: Y.Doc): AnyType[] => {
  const out: AnyType[] = []
  const visit = (t: AnyType): void => {
    out.push(t)
    const children: unknown[] = t instanceof Y.Map ? Array.from(t.values()) : t instanceof Y.Array || t instanceof Y.XmlFragment ? t.toArray() : []
    for (const c of children) if (c instanceof Y.AbstractType) visit(c)
  }
  visit(doc.getText('text'))
  visit(doc.getMap('map'))
  visit(doc.getArray('array'))
  visit(doc.getXmlFragment('xml'))
  return out
}

const editText = (gen: prng.PRNG, t: Y.Text): void => {
  const len = t.length
  const pos = prng.int32(gen, 0, len)
  const op = prng.int32(gen, 0, 4)
  if (op === 0 && len > 0) t.delete(pos === len ? pos - 1 : pos, 1 + prng.int32(gen, 0, 3))
  else if (op === 1 && len > 0) t.format(prng.int32(gen, 0, len - 1), prng.int32(gen, 1, 4), attrs(gen))
  else if (op === 2) t.insertEmbed(pos, { image: prng.word(gen) }, prng.bool(gen) ? attrs(gen) : {})
  else t.insert(pos, prng.utf16String(gen, 6) || 'x', prng.bool(gen) ? attrs(gen) : undefined)
}

const randomEdit = (gen: prng.PRNG, doc: Y.Doc): void => {
  const t = prng.oneOf(gen, allTypes(doc))
  const del = prng.int32(gen, 0, 4) === 0
  if (t instanceof Y.Text) {
    editText(gen, t) // Y.XmlText too
  } else if (t instanceof Y.Map) {
    // Y.XmlHook too
    const key = prng.oneOf(gen, ['a', 'b', 'c', 'd'])
    if (del) t.delete(key)
    else t.set(key, randomContent(gen, true))
  } else if (t instanceof Y.XmlElement && prng.bool(gen)) {
    if (del) t.removeAttribute('class')
    else t.setAttribute(prng.oneOf(gen, ['class', 'id']), prng.word(gen))
  } else if (t instanceof Y.XmlFragment) {
    if (del && t.length > 0) t.delete(prng.int32(gen, 0, t.length - 1), 1)
    else {
      const child = prng.oneOf(gen, [() => new Y.XmlElement('span'), () => new Y.XmlText('t'), () => new Y.XmlHook('h')])()
      t.insert(prng.int32(gen, 0, t.length), [child as Y.XmlElement])
    }
  } else if (t instanceof Y.Array) {
    if (del && t.length > 0) t.delete(prng.int32(gen, 0, t.length - 1), 1)
    else t.insert(prng.int32(gen, 0, t.length), [randomContent(gen, false), randomContent(gen, false)])
  }
}

const buildCorpus = (seed: number): Sample[] => {
  const gen = prng.create(seed)
  const samples: Sample[] = []
  // Three peers edit concurrently, then sync: updates carry origins and parents from other clients.
  const docs = [0, 1, 2].map((i) => {
    const doc = new Y.Doc({ gc: i !== 2 })
    doc.clientID = 100 + i
    return doc
  })
  for (const doc of docs) {
    doc.on('update', (update: Uint8Array, origin: unknown) => {
      if (origin !== 'sync') samples.push({ name: `event ${doc.clientID}#${samples.length}`, update })
    })
  }
  const sync = (): void => {
    for (const a of docs) for (const b of docs) if (a !== b) Y.applyUpdate(b, Y.encodeStateAsUpdate(a, Y.encodeStateVector(b)), 'sync')
  }
  // One subdocument with every option yjs writes, whatever the random edits do.
  docs[0]!.getMap('map').set('subdoc', new Y.Doc({ gc: false, autoLoad: true, meta: { title: 'sub' } }))
  for (let round = 0; round < 12; round++) {
    for (const doc of docs) {
      for (let k = 0; k < 6; k++) randomEdit(gen, doc)
    }
    sync()
  }
  // Full states (with GC structs and deleted content), diffs, and merges with gaps (Skip structs).
  for (const doc of docs) {
    const full = Y.encodeStateAsUpdate(doc)
    samples.push({ name: `full state ${doc.clientID}`, update: full })
    samples.push({ name: `diff ${doc.clientID}`, update: Y.encodeStateAsUpdate(doc, Y.encodeStateVector(docs[0]!)) })
  }
  const events = samples.filter((s) => s.name.startsWith('event 100#'))
  for (let i = 0; i + 4 < events.length; i += 5) {
    const [a, , c, , e] = events.slice(i, i + 5).map((s) => s.update)
    samples.push({ name: `merge with gaps ${i}`, update: Y.mergeUpdates([a!, c!, e!]) })
    samples.push({ name: `merge ${i}`, update: Y.mergeUpdates(events.slice(i, i + 5).map((s) => s.update)) })
  }
  // Legacy content yjs still reads but no longer writes: ContentJSON.
  samples.push({ name: 'ContentJSON', update: contentJson })
  return samples
}

// ---- hand-built updates ------------------------------------------------------------------------

const bytes = (write: (e: encoding.Encoder) => void): Uint8Array => {
  const e = encoding.createEncoder()
  write(e)
  return encoding.toUint8Array(e)
}
const uints = (e: encoding.Encoder, ...ns: number[]): void => {
  for (const n of ns) encoding.writeVarUint(e, n)
}

/** One client (1) with one struct at clock 0: `info`, then `body`, then an empty delete set. */
const oneStruct = (info: number, body: (e: encoding.Encoder) => void): Uint8Array =>
  bytes((e) => {
    uints(e, 1, 1, 1, 0)
    encoding.writeUint8(e, info)
    body(e)
    uints(e, 0)
  })

/** A root-level item in the type named 'root': parent info 1, key, then the content. */
const rootItem = (ref: number, content: (e: encoding.Encoder) => void): Uint8Array =>
  oneStruct(ref, (e) => {
    uints(e, 1)
    encoding.writeVarString(e, 'root')
    content(e)
  })

const contentJson = rootItem(2, (e) => {
  uints(e, 2)
  encoding.writeVarString(e, '{"a":[1,2]}')
  encoding.writeVarString(e, 'undefined')
})

// ---- helpers ---------------------------------------------------------------------------------

const rejects = (update: Uint8Array, check: (bytes: Uint8Array) => unknown = validateUpdate): TandemError => {
  try {
    check(update)
  } catch (err) {
    expect(err).toBeInstanceOf(TandemError)
    expect((err as TandemError).code).toBe('malformed_message')
    return err as TandemError
  }
  throw new Error(`accepted: [${Array.from(update.slice(0, 40)).join(',')}${update.length > 40 ? ',...' : ''}]`)
}

const concat = (a: Uint8Array, b: Uint8Array): Uint8Array => {
  const out = new Uint8Array(a.length + b.length)
  out.set(a)
  out.set(b, a.length)
  return out
}

/** What yjs itself decodes of an Item: where it asks to go (parent, when it has no origins, is a root name or an id). */
const expectedRef = (item: Y.Item): ItemRef => {
  const ref = new ItemRef(item.id.client, item.id.clock, item.length)
  if (item.origin !== null) [ref.originClient, ref.originClock] = [item.origin.client, item.origin.clock]
  if (item.rightOrigin !== null) [ref.rightClient, ref.rightClock] = [item.rightOrigin.client, item.rightOrigin.clock]
  const parent = item.parent as unknown
  if (typeof parent === 'string') ref.parentName = parent
  else if (parent instanceof Y.ID) [ref.parentClient, ref.parentClock] = [parent.client, parent.clock]
  ref.parentSub = item.parentSub
  ref.isType = item.content instanceof Y.ContentType
  return ref
}

const expectedSummary = (update: Uint8Array) => {
  const { structs, ds } = Y.decodeUpdate(update)
  let deletes = 0
  for (const ranges of ds.clients.values()) deletes += ranges.length
  return {
    structs: structs.length, // Items, GC and Skip structs alike
    deletes,
    clients: [...new Set(structs.map((s) => s.id.client))].sort((a, b) => a - b),
    items: structs.filter((s): s is Y.Item => s instanceof Y.Item).map(expectedRef),
  }
}

const corpus = buildCorpus(SEED)

// ---- tests -----------------------------------------------------------------------------------

describe('validateUpdate on real updates', () => {
  it('accepts every update and matches Y.decodeUpdate', () => {
    expect(corpus.length).toBeGreaterThan(200)
    for (const { name, update } of corpus) {
      expect(validateUpdate(update), name).toEqual(expectedSummary(update))
    }
  })

  it('covers every struct kind, content and shared type', () => {
    const seen = new Set<string>()
    for (const { update } of corpus) {
      for (const s of Y.decodeUpdate(update).structs) {
        seen.add(s.constructor.name)
        if (s instanceof Y.Item) {
          seen.add(s.content.constructor.name)
          if (s.content instanceof Y.ContentType) seen.add(s.content.type.constructor.name)
          if (s.content instanceof Y.ContentDoc) seen.add(`doc opts ${Object.keys(s.content.opts).sort().join(',')}`)
        }
      }
      if (Y.decodeUpdate(update).ds.clients.size > 0) seen.add('delete set')
    }
    for (const kind of [
      'Item',
      'GC',
      'Skip',
      'delete set',
      'ContentAny',
      'ContentBinary',
      'ContentDeleted',
      'ContentDoc',
      'ContentEmbed',
      'ContentFormat',
      'ContentJSON',
      'ContentString',
      'ContentType',
      'YArray',
      'YMap',
      'YText',
      'YXmlElement',
      'YXmlFragment',
      'YXmlHook',
      'YXmlText',
      'doc opts autoLoad,gc,meta',
    ])
      expect(seen, kind).toContain(kind)
  })

  it('accepts legacy ContentJSON that yjs applies', () => {
    const doc = new Y.Doc()
    Y.applyUpdate(doc, contentJson)
    expect(doc.getArray('root').toArray()).toEqual([{ a: [1, 2] }, undefined])
    expect(validateUpdate(contentJson)).toMatchObject({ structs: 1, deletes: 0, clients: [1] })
  })

  it('accepts the empty update', () => {
    expect(validateUpdate(Y.encodeStateAsUpdate(new Y.Doc()))).toEqual({ structs: 0, deletes: 0, clients: [], items: [] })
  })
})

describe('validateUpdate rejects', () => {
  const diverse = [
    ...corpus.filter((s) => s.name.startsWith('full state')),
    ...corpus.filter((s) => s.name.startsWith('merge with gaps')).slice(0, 2),
    ...corpus.filter((s) => s.name.startsWith('event')).slice(0, 20),
    corpus.find((s) => s.name === 'ContentJSON')!,
  ]

  it('every strict prefix', () => {
    // The walk reads the same bytes as for the whole update and the whole update is consumed
    // exactly, so every cut is reached before the walk ends: no prefix can be valid.
    for (const { update } of diverse) {
      for (let n = 0; n < update.length; n++) rejects(update.subarray(0, n))
    }
  })

  it('every strict prefix, read from inside a larger buffer (no reading past the view)', () => {
    for (const { update } of diverse.slice(0, 3)) {
      const padded = concat(update, new Uint8Array(64).fill(0))
      for (let n = 0; n < update.length; n++) rejects(padded.subarray(0, n))
    }
  })

  it('trailing garbage', () => {
    const gen = prng.create(SEED + 1)
    for (const { update } of corpus) rejects(concat(update, prng.uint8Array(gen, prng.int32(gen, 1, 5))))
  })

  it('the empty array', () => {
    rejects(new Uint8Array(0))
  })

  it('absurd counts', () => {
    rejects(bytes((e) => uints(e, 1, 2 ** 32, 1, 0, 0))) // 2^32 structs, then 1 byte
    rejects(bytes((e) => uints(e, 2 ** 40, 0, 0))) // 2^40 clients
    rejects(bytes((e) => uints(e, 0, 2 ** 33, 0))) // delete set clients
    rejects(bytes((e) => uints(e, 0, 1, 5, 2 ** 30, 1, 1))) // delete ranges
    rejects(rootItem(8, (e) => uints(e, 2 ** 30, 1))) // ContentAny values
    rejects(rootItem(2, (e) => uints(e, 2 ** 30, 1))) // ContentJSON entries
  })

  it('integers past 2^53', () => {
    rejects(
      bytes((e) => {
        uints(e, 1, 1)
        encoding.writeUint8Array(e, new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]))
        uints(e, 0, 0, 1, 0)
      }),
    )
    rejects(bytes((e) => uints(e, 1, 1, 1, Number.MAX_SAFE_INTEGER, 0, 2, 0))) // clock + length overflows
  })

  it('unknown content refs, and a Skip info byte with flags', () => {
    for (let ref = 11; ref < 32; ref++) rejects(rootItem(ref, (e) => uints(e, 1)))
    rejects(oneStruct(10 | 0x80, (e) => uints(e, 1, 0, 3)))
  })

  it('a type ref outside 0..6, which makes Y.applyUpdate throw', () => {
    for (let ref = 0; ref <= 6; ref++)
      validateUpdate(
        rootItem(7, (e) => {
          uints(e, ref)
          if (ref === 3 || ref === 5) encoding.writeVarString(e, 'p')
        }),
      )
    const bad = rootItem(7, (e) => uints(e, 7))
    rejects(bad)
    expect(() => Y.applyUpdate(new Y.Doc(), bad)).toThrow()
  })

  it('invalid JSON in an embed, a format value and JSON content', () => {
    rejects(rootItem(5, (e) => encoding.writeVarString(e, '{bad')))
    validateUpdate(rootItem(5, (e) => encoding.writeVarString(e, '{"ok":1}')))
    rejects(
      rootItem(6, (e) => {
        encoding.writeVarString(e, 'bold')
        encoding.writeVarString(e, 'tru')
      }),
    )
    rejects(
      rootItem(2, (e) => {
        uints(e, 2)
        encoding.writeVarString(e, 'undefined')
        encoding.writeVarString(e, '[1,')
      }),
    )
  })

  it('strings that are not UTF-8, which yjs decodes fatally', () => {
    const bad = rootItem(4, (e) => uints(e, 2, 0xc3, 0x28))
    rejects(bad)
    expect(() => Y.applyUpdate(new Y.Doc(), bad)).toThrow()
  })

  it('unreadable and too deeply nested any values, with a TandemError and not a RangeError', () => {
    rejects(
      rootItem(8, (e) => {
        uints(e, 1)
        encoding.writeUint8(e, 115)
      }),
    ) // unknown tag
    const deep = rootItem(8, (e) => {
      uints(e, 1)
      for (let i = 0; i < 100_000; i++) encoding.writeUint8Array(e, new Uint8Array([117, 1]))
      encoding.writeUint8(e, 127)
    })
    const err = rejects(deep)
    expect(err).not.toBeInstanceOf(RangeError)
    const ok = rootItem(8, (e) => {
      uints(e, 1)
      encoding.writeAny(e, [[[{ a: [1n, 2.5, 'x', new Uint8Array([1])] }]]])
    })
    expect(validateUpdate(ok).structs).toBe(1)
  })

  it('zero-length structs and content', () => {
    rejects(oneStruct(0, (e) => uints(e, 0))) // GC
    rejects(oneStruct(10, (e) => uints(e, 0))) // Skip
    rejects(rootItem(1, (e) => uints(e, 0))) // ContentDeleted
    rejects(rootItem(4, (e) => uints(e, 0))) // empty string
    rejects(rootItem(8, (e) => uints(e, 0))) // no values
    rejects(rootItem(2, (e) => uints(e, 0))) // no JSON entries
    rejects(bytes((e) => uints(e, 0, 1, 5, 1, 3, 0))) // delete range
  })

  it('an origin or parent that is not before the struct itself, which makes Y.applyUpdate throw', () => {
    const selfOrigin = oneStruct(0x80 | 4, (e) => {
      uints(e, 1, 0)
      encoding.writeVarString(e, 'x')
    })
    const selfRight = oneStruct(0x40 | 4, (e) => {
      uints(e, 1, 0)
      encoding.writeVarString(e, 'x')
    })
    const selfParent = oneStruct(4, (e) => {
      uints(e, 0, 1, 0)
      encoding.writeVarString(e, 'x')
    })
    for (const u of [selfOrigin, selfRight, selfParent]) {
      rejects(u)
      expect(() => Y.applyUpdate(new Y.Doc(), u)).toThrow()
    }
  })

  it('a client written twice, which yjs would half drop', () => {
    const twice = bytes((e) => {
      uints(e, 2)
      for (const clock of [0, 1]) {
        uints(e, 1, 7, clock, 4, 1)
        encoding.writeVarString(e, 'r')
        encoding.writeVarString(e, 'x')
      }
      uints(e, 0)
    })
    rejects(twice)
  })

  it('subdocument options that are not an object, or override the guid', () => {
    const doc = (opts: unknown) =>
      rootItem(9, (e) => {
        encoding.writeVarString(e, 'guid')
        encoding.writeAny(e, opts as Parameters<typeof encoding.writeAny>[1])
      })
    expect(validateUpdate(doc({ gc: false, autoLoad: true, meta: { a: 1 } })).structs).toBe(1)
    for (const bad of [null, 1, [], { guid: 'other' }, { gcFilter: 1 }, { gc: 'no' }]) rejects(doc(bad))
    expect(() => Y.applyUpdate(new Y.Doc(), doc(null))).toThrow()
  })

  it('parent info other than 0 or 1', () => {
    rejects(
      oneStruct(4, (e) => {
        uints(e, 2, 1, 0)
        encoding.writeVarString(e, 'x')
      }),
    )
  })
})

describe('validated updates are safe to apply', () => {
  // Against a fresh document. Against a document that already holds state the guarantee cannot be
  // parse-only: see the last test.
  it('random byte mutations either fail validation or apply without throwing', () => {
    const gen = prng.create(SEED + 2)
    let accepted = 0
    for (let i = 0; i < 2000; i++) {
      const sample = prng.oneOf(gen, corpus)
      const bytes = Array.from(sample.update)
      for (let k = prng.int32(gen, 1, 3); k > 0; k--) {
        const at = prng.int32(gen, 0, bytes.length - 1)
        const op = prng.int32(gen, 0, 5)
        if (op === 0) bytes.splice(at, 1)
        else if (op === 1) bytes.splice(at, 0, prng.uint32(gen, 0, 255))
        else if (op === 2) bytes[at] = (bytes[at] ?? 0) ^ (1 << prng.int32(gen, 0, 7))
        else if (op === 3) bytes[at] = prng.oneOf(gen, [0, 1, 2, 10, 127, 128, 255])
        else bytes[at] = prng.uint32(gen, 0, 255)
      }
      const mutated = new Uint8Array(bytes)
      let valid = true
      try {
        validateUpdate(mutated)
      } catch (err) {
        valid = false
        expect(err).toBeInstanceOf(TandemError)
        expect((err as TandemError).code).toBe('malformed_message')
      }
      if (!valid) continue
      accepted++
      const fresh = new Y.Doc()
      expect(() => Y.applyUpdate(fresh, mutated), `${sample.name} mutation ${i}`).not.toThrow()
      expect(() => Y.encodeStateAsUpdate(fresh)).not.toThrow()
    }
    expect(accepted).toBeGreaterThan(100) // the property says something only if some mutations pass
  })

  it('a zero-length deleted item, which makes Y.applyUpdate throw', () => {
    const empty = rootItem(1, (e) => uints(e, 0))
    rejects(empty)
    expect(() => Y.applyUpdate(new Y.Doc(), empty)).toThrow()
  })

  // Found by running the mutation test against a warm document: yjs 13.6 crashes in Item.integrate
  // when an item overlaps the end of what the document holds and the struct before the overlap is a
  // GC (it takes `GC.right` and `GC.lastId`, which do not exist). Both updates are well formed, so no
  // parse-only check can refuse the second; the room must still catch what Y.applyUpdate throws.
  it('documents the limit: a valid item overlapping a GC struct the doc holds makes yjs throw', () => {
    const gc = bytes((e) => uints(e, 1, 1, 1, 0, 0, 1, 0)) // client 1: GC of length 1 at clock 0
    const overlapping = rootItem(4, (e) => encoding.writeVarString(e, 'ab')) // client 1: 'ab' at clock 0
    validateUpdate(gc)
    validateUpdate(overlapping)
    const fresh = new Y.Doc()
    Y.applyUpdate(fresh, overlapping)
    expect(fresh.getText('root').toString()).toBe('ab')
    const doc = new Y.Doc()
    Y.applyUpdate(doc, gc)
    expect(() => Y.applyUpdate(doc, overlapping)).toThrow(TypeError)
  })
})

describe('validateStateVector', () => {
  const doc = new Y.Doc()
  for (const s of corpus.filter((s) => s.name.startsWith('full state'))) Y.applyUpdate(doc, s.update)
  const sv = Y.encodeStateVector(doc)

  it('accepts real state vectors', () => {
    validateStateVector(sv)
    validateStateVector(Y.encodeStateVector(new Y.Doc()))
    expect(Y.decodeStateVector(sv).size).toBe(3)
  })

  it('rejects every strict prefix, the empty array and trailing bytes', () => {
    for (let n = 0; n < sv.length; n++) rejects(sv.subarray(0, n), validateStateVector)
    rejects(concat(sv, new Uint8Array([0])), validateStateVector)
  })

  it('rejects absurd counts and integers past 2^53', () => {
    rejects(
      bytes((e) => uints(e, 2 ** 32, 1, 1)),
      validateStateVector,
    )
    rejects(
      bytes((e) => {
        uints(e, 1, 1)
        encoding.writeUint8Array(e, new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]))
      }),
      validateStateVector,
    )
  })

  it('rejects an update where a state vector is expected', () => {
    rejects(Y.encodeStateAsUpdate(doc), validateStateVector)
  })
})
