/**
 * How much work integrating an untrusted update into a room's document would cost, estimated before
 * it is applied (issue: "a tiny update that costs seconds").
 *
 * Yjs places an item between its left origin and its right origin. When those two are neighbours
 * (nearly always: typing, pastes, formatting), that is a pointer update. When they are not (the
 * update was made concurrently with other inserts at that spot, or was crafted so), Yjs scans every
 * item between them, and an item with no left origin scans from the start of its parent: 20 such
 * items against a text of a million items cost seconds. Map entries without a left origin walk the
 * key's whole chain first. Steps here count those visits, the unit of Yjs's conflict loop.
 *
 * The estimate follows each item of the update the way Yjs would place it: against the document's
 * own linked lists, and against the update's earlier items, whose places it tracks exactly while
 * they are neighbours of their origins. Where it cannot know a place (an earlier item that itself
 * needed a scan), it assumes the widest range that item's scan allowed, so it over-estimates
 * (never under-). Walks stop at the budget: estimating costs at most what it bounds, far less per
 * step (pointer reads, no sets). Items whose origins are in neither the document nor the update
 * wait in Yjs's pending set: they are counted (`missing`), and the caller estimates them again with
 * the update that completes them.
 */

import * as Y from 'yjs'
import { type ItemRef, NONE } from './update-validator.ts'

export interface IntegrationEstimate {
  /** Estimated conflict-loop steps; at most `budget + 1` (the walk stops once past the budget). */
  readonly steps: number
  /** Items that reference structs in neither the document nor the update (they stay pending). */
  readonly missing: number
}

/** A parent list: a type of the document, or the key of one the update creates or a root not yet used. */
type Parent = Y.AbstractType<unknown> | string

/** Where an update item was placed: exactly (its right neighbour known) or somewhere in a scanned range. */
interface Placed {
  readonly ref: ItemRef
  readonly parent: Parent | null
  /** Exact: the node right of it. Uncertain: undefined. */
  readonly right: string | null | undefined
  /** Uncertain: where its scan began (it landed at or after it). */
  readonly scanFrom: string | null
  /** Waits for a missing dependency (so do the items placed by it). */
  readonly missing?: true
}

const key = (client: number, clock: number): string => `${client}:${clock}`

const FREE: IntegrationEstimate = Object.freeze({ steps: 0, missing: 0 })

export function estimateIntegration(doc: Y.Doc, items: readonly ItemRef[], budget: number): IntegrationEstimate {
  // The hot path: a keystroke is one item beside its origins, told without building any state.
  if (items.length === 0 || (items.length === 1 && besideItsOrigins(doc, items[0]!))) return FREE
  return new Estimator(doc, items, budget).run()
}

/** The document's struct holding (client, clock), or undefined when the document has not got it. */
const docStruct = (doc: Y.Doc, client: number, clock: number): Y.Item | Y.GC | undefined => {
  const structs = doc.store.clients.get(client)
  if (structs === undefined || structs.length === 0) return undefined
  const last = structs[structs.length - 1]!
  if (clock >= last.id.clock + last.length) return undefined
  return structs[Y.findIndexSS(structs, clock)] as Y.Item | Y.GC
}

/** Whether one item's left and right origins are neighbours in the document (no scan): no allocation. */
const besideItsOrigins = (doc: Y.Doc, ref: ItemRef): boolean => {
  if (ref.originClient !== NONE) {
    const left = docStruct(doc, ref.originClient, ref.originClock)
    if (left === undefined) return false
    if (!(left instanceof Y.Item)) return true // beside a GC: kept as GC
    if (ref.originClock < left.id.clock + left.length - 1) {
      return ref.rightClient === ref.originClient && ref.rightClock === ref.originClock + 1 // inside one item: split there
    }
    const next = left.right
    return ref.rightClient === NONE ? next === null : next !== null && next.id.client === ref.rightClient && next.id.clock === ref.rightClock
  }
  if (ref.parentSub !== null) return false
  if (ref.rightClient !== NONE) {
    const right = docStruct(doc, ref.rightClient, ref.rightClock)
    // At the front: the right origin starts an item that has nothing on its left.
    return right instanceof Y.Item && right.id.clock === ref.rightClock && right.left === null
  }
  if (ref.parentName === null) return false
  const parent = doc.share.get(ref.parentName)
  return parent === undefined || parent._start === null
}

class Estimator {
  readonly #doc: Y.Doc
  readonly #budget: number
  /** The update's items by client, in clock order (as the update holds them). */
  readonly #byClient = new Map<number, ItemRef[]>()
  readonly #placed = new Map<ItemRef, Placed>()
  /** Right neighbours changed by update items placed exactly: edge (after id) or front of a parent → node. */
  readonly #rightOf = new Map<string, string | null>()
  readonly #front = new Map<Parent, string | null>()
  /** Update items placed in each parent so far (the conservative part of a scan's cost). */
  readonly #inParent = new Map<Parent, number>()
  #steps = 0
  #missing = 0

  constructor(doc: Y.Doc, items: readonly ItemRef[], budget: number) {
    this.#doc = doc
    this.#budget = budget
    for (const ref of items) {
      // Yjs skips what the document already has (a resent update, a sync step 2 that overlaps).
      if (docStruct(doc, ref.client, ref.clock + ref.length - 1) !== undefined) continue
      let list = this.#byClient.get(ref.client)
      if (list === undefined) {
        list = []
        this.#byClient.set(ref.client, list)
      }
      list.push(ref)
    }
  }

  run(): IntegrationEstimate {
    for (const list of this.#byClient.values()) {
      for (const ref of list) {
        if (this.#steps > this.#budget) break
        this.#place(ref)
      }
    }
    return { steps: Math.min(this.#steps, this.#budget + 1), missing: this.#missing }
  }

  #place(ref: ItemRef): void {
    const parent = this.#parentOf(ref)
    if (parent === undefined) {
      // A dependency is missing: Yjs keeps the item pending; it is estimated again when completed.
      this.#missing++
      this.#placed.set(ref, { ref, parent: null, right: undefined, scanFrom: null, missing: true })
      return
    }
    if (parent === null) {
      // Next to a garbage-collected struct, or in a deleted type: Yjs keeps it as GC, no scan.
      this.#placed.set(ref, { ref, parent: null, right: null, scanFrom: null })
      return
    }
    const right = ref.rightClient === NONE ? null : key(ref.rightClient, ref.rightClock)
    let start: string | null | undefined
    let frontKey: Parent | null = null
    if (ref.originClient !== NONE) {
      start = this.#rightOfEdge(ref.originClient, ref.originClock)
    } else if (ref.parentSub !== null) {
      // Without a left origin, Yjs walks the key's chain to its first entry, scans, and walks again.
      this.#take(3 * this.#chainLength(parent, ref.parentSub) + this.#count(parent))
      this.#settle(ref, parent, undefined, null)
      return
    } else {
      frontKey = parent
      start = this.#front.has(parent)
        ? this.#front.get(parent)!
        : typeof parent === 'string'
          ? null
          : parent._start === null
            ? null
            : key(parent._start.id.client, parent._start.id.clock)
    }

    if (start !== undefined && start === right) {
      // Neighbours: a pointer update. The update's next items see it where it went.
      if (frontKey !== null) this.#front.set(frontKey, key(ref.client, ref.clock))
      else this.#rightOf.set(key(ref.originClient, ref.originClock), key(ref.client, ref.clock))
      this.#settle(ref, parent, right, null)
      return
    }
    // A scan, from the node right of the left origin (or the widest place it could be) to the right origin.
    const from = start === undefined ? this.#scanFromOf(ref) : start
    this.#take(this.#walk(from, right) + this.#count(parent))
    this.#settle(ref, parent, undefined, from)
  }

  #settle(ref: ItemRef, parent: Parent, right: string | null | undefined, scanFrom: string | null): void {
    this.#placed.set(ref, { ref, parent, right, scanFrom })
    this.#inParent.set(parent, (this.#inParent.get(parent) ?? 0) + 1)
    if (right !== undefined) this.#rightOf.set(key(ref.client, ref.clock + ref.length - 1), right)
  }

  #take(steps: number): void {
    this.#steps += steps
  }

  #count(parent: Parent): number {
    return this.#inParent.get(parent) ?? 0
  }

  /** The node right of the edge after id (client, clock): undefined when an uncertain item decides it. */
  #rightOfEdge(client: number, clock: number): string | null | undefined {
    const edge = key(client, clock)
    if (this.#rightOf.has(edge)) return this.#rightOf.get(edge)!
    const own = this.#updateItem(client, clock)
    if (own !== null) {
      if (clock < own.clock + own.length - 1) return key(client, clock + 1)
      const placed = this.#placed.get(own)
      return placed === undefined ? undefined : placed.right
    }
    const struct = this.#docStruct(client, clock)
    if (!(struct instanceof Y.Item)) return null
    if (clock < struct.id.clock + struct.length - 1) return key(client, clock + 1)
    return struct.right === null ? null : key(struct.right.id.client, struct.right.id.clock)
  }

  /** Where the scan of an item whose left neighbour is uncertain may start: that neighbour's own scan start. */
  #scanFromOf(ref: ItemRef): string | null {
    const own = this.#updateItem(ref.originClient, ref.originClock)
    const placed = own === null ? undefined : this.#placed.get(own)
    return placed?.scanFrom ?? null
  }

  /**
   * The item's parent list: from its origins when it has any (as Yjs takes it), else named. null:
   * Yjs keeps the item as GC; undefined: a dependency is in neither the document nor the update.
   */
  #parentOf(ref: ItemRef): Parent | null | undefined {
    if (ref.originClient !== NONE) return this.#parentAt(ref.originClient, ref.originClock)
    if (ref.rightClient !== NONE) return this.#parentAt(ref.rightClient, ref.rightClock)
    if (ref.parentName !== null) return (this.#doc.share.get(ref.parentName) as Y.AbstractType<unknown> | undefined) ?? `root:${ref.parentName}`
    if (ref.parentClient === NONE) return null
    const own = this.#updateItem(ref.parentClient, ref.parentClock)
    if (own !== null) return own.isType ? `type:${own.client}:${own.clock}` : null
    const struct = this.#docStruct(ref.parentClient, ref.parentClock)
    if (struct === undefined) return undefined
    return struct instanceof Y.Item && struct.content instanceof Y.ContentType ? (struct.content.type as Y.AbstractType<unknown>) : null
  }

  #parentAt(client: number, clock: number): Parent | null | undefined {
    const own = this.#updateItem(client, clock)
    if (own !== null) {
      const placed = this.#placed.get(own)
      // Not placed yet (it comes later in the update), or itself missing: count it as missing.
      return placed === undefined || placed.missing === true ? undefined : placed.parent
    }
    const struct = this.#docStruct(client, clock)
    if (struct === undefined) return undefined
    return struct instanceof Y.Item ? (struct.parent as Y.AbstractType<unknown> | null) : null
  }

  /** Entries of a map key's chain (Yjs walks them when an entry has no left origin), up to the budget. */
  #chainLength(parent: Parent, sub: string): number {
    if (typeof parent === 'string') return 0
    let steps = 0
    const limit = this.#budget - this.#steps + 1
    for (let item = parent._map.get(sub) ?? null; item !== null && steps < limit; item = item.left) steps++
    return steps
  }

  /** Document items from the node `from` up to the node `to` (null: the end), up to the budget. */
  #walk(from: string | null, to: string | null): number {
    const start = this.#docNode(from)
    if (start === null) return 0
    const end = to === null ? null : this.#docNode(to)
    let steps = 0
    const limit = this.#budget - this.#steps + 1
    for (let item: Y.Item | null = start; item !== null && item !== end && steps < limit; item = item.right) steps++
    return steps
  }

  /** The document item a node key stands for (an update item: the document node right of it). */
  #docNode(node: string | null): Y.Item | null {
    for (let hops = 0; node !== null && hops < 1_000; hops++) {
      const [client, clock] = node.split(':').map(Number) as [number, number]
      const own = this.#updateItem(client, clock)
      if (own === null) {
        const struct = this.#docStruct(client, clock)
        return struct instanceof Y.Item ? struct : null
      }
      const placed = this.#placed.get(own)
      if (placed === undefined || placed.right === undefined) return null
      node = placed.right
    }
    return null
  }

  /** The update's item holding (client, clock), or null. */
  #updateItem(client: number, clock: number): ItemRef | null {
    const list = this.#byClient.get(client)
    if (list === undefined) return null
    let lo = 0
    let hi = list.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      const ref = list[mid]!
      if (clock < ref.clock) hi = mid - 1
      else if (clock >= ref.clock + ref.length) lo = mid + 1
      else return ref
    }
    return null
  }

  #docStruct(client: number, clock: number): Y.Item | Y.GC | undefined {
    return docStruct(this.#doc, client, clock)
  }
}
