/**
 * A Y.Doc as plain JSON, for `GET /v1/rooms/:roomId/ydoc`. A document loaded from updates does not
 * know which kind of shared type each root is (the editor decides by calling getText, getMap...), so
 * each untyped root is read by what it holds: map entries → object; text content → string; XML
 * elements → XML string; other list content → array.
 */

import * as Y from 'yjs'

// biome-ignore lint/suspicious/noExplicitAny: Yjs's shared types are invariant in their event type; any is their one common supertype
type AnyType = Y.AbstractType<any>

const TEXT_CONTENT = [Y.ContentString, Y.ContentFormat, Y.ContentEmbed]

const kindOf = (type: AnyType): 'map' | 'text' | 'xml' | 'array' | 'empty' => {
  if (type instanceof Y.Map) return 'map'
  if (type instanceof Y.Text) return 'text'
  if (type instanceof Y.XmlFragment) return 'xml'
  if (type instanceof Y.Array) return 'array'
  if (type._map.size > 0) return 'map'
  for (let item = type._start; item !== null; item = item.right) {
    if (TEXT_CONTENT.some((C) => item!.content instanceof C)) return 'text'
    if (item.content instanceof Y.ContentType && (item.content.type instanceof Y.XmlElement || item.content.type instanceof Y.XmlText)) return 'xml'
    if (!item.deleted) return 'array'
  }
  return 'empty'
}

export const docToJson = (doc: Y.Doc): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const [key, type] of doc.share) {
    switch (kindOf(type)) {
      case 'map':
        out[key] = doc.getMap(key).toJSON()
        break
      case 'text':
        out[key] = doc.getText(key).toString()
        break
      case 'xml':
        out[key] = doc.getXmlFragment(key).toString()
        break
      case 'array':
        out[key] = doc.getArray(key).toJSON()
        break
      case 'empty':
        break
    }
  }
  return out
}
