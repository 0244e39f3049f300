/** Prints results as a table, writes them as JSON, and draws them as a small hand-written SVG. */

import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Result } from '../types.ts'

const fmt = (x: number | undefined): string => (x === undefined ? '' : Number.isFinite(x) ? String(Number(x.toPrecision(4))) : String(x))

export function table(results: readonly Result[]): string {
  const rows = [
    ['scenario', 'metric', 'value', 'unit', 'compared with', 'baseline', 'ratio', 'target', ''],
    ...results.map((r) => [
      r.scenario,
      r.metric,
      fmt(r.value),
      r.unit,
      r.baseline?.label ?? '',
      fmt(r.baseline?.value),
      r.ratio === undefined ? '' : `${fmt(r.ratio)}x`,
      r.target ?? '',
      r.met === undefined ? '' : r.met ? 'met' : 'MISSED',
    ]),
  ]
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)))
  const line = (row: string[]): string =>
    row
      .map((cell, c) => (c === 2 || c === 5 || c === 6 ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!)))
      .join('  ')
      .trimEnd()
  return [line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n')
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

/**
 * One row per result that has a baseline: two bars on a log scale (the figure and its baseline)
 * and the ratio; results without a baseline are listed as text.
 */
export function svg(results: readonly Result[], title: string): string {
  const withBase = results.filter((r) => r.baseline !== undefined && r.value > 0 && r.baseline.value > 0)
  const plain = results.filter((r) => !withBase.includes(r))
  const rowH = 34
  // About 6.6 px a character at 12 px sans-serif: long labels push the bars right, never under them.
  const labelW = Math.max(380, 20 + Math.ceil(6.6 * Math.max(0, ...withBase.map((r) => `${r.scenario} ${r.metric}`.length))))
  const barW = 360
  const width = labelW + barW + 180
  const top = 48
  const height = top + withBase.length * rowH + 30 + plain.length * 16 + 20
  const values = withBase.flatMap((r) => [r.value, r.baseline!.value])
  const lo = Math.log10(Math.min(...values, 1)) - 0.2
  const hi = Math.log10(Math.max(...values, 10)) + 0.1
  const scale = (v: number): number => Math.max(2, ((Math.log10(v) - lo) / (hi - lo)) * barW)
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="20" font-size="15" font-weight="bold">${esc(title)}</text>`,
    `<rect x="10" y="30" width="10" height="8" fill="#3b6fd8"/><text x="24" y="38">figure</text>`,
    `<rect x="80" y="30" width="10" height="8" fill="#bbb"/><text x="94" y="38">floor / peer (log scale)</text>`,
  ]
  withBase.forEach((r, i) => {
    const y = top + i * rowH
    const color = r.met === false ? '#d83b3b' : '#3b6fd8'
    out.push(`<text x="10" y="${y + 13}">${esc(`${r.scenario} ${r.metric}`)}</text>`)
    out.push(`<text x="10" y="${y + 26}" fill="#666" font-size="10">${esc(`vs ${r.baseline!.label}`)}</text>`)
    out.push(`<rect x="${labelW}" y="${y + 2}" width="${scale(r.value).toFixed(1)}" height="12" fill="${color}"/>`)
    out.push(`<rect x="${labelW}" y="${y + 16}" width="${scale(r.baseline!.value).toFixed(1)}" height="10" fill="#bbb"/>`)
    out.push(`<text x="${labelW + barW + 8}" y="${y + 13}">${esc(`${fmt(r.value)} ${r.unit}`)}</text>`)
    out.push(`<text x="${labelW + barW + 8}" y="${y + 26}" fill="#666">${esc(`${fmt(r.ratio)}x`)}</text>`)
  })
  let y = top + withBase.length * rowH + 24
  for (const r of plain) {
    out.push(
      `<text x="10" y="${y}">${esc(`${r.scenario} ${r.metric}: ${fmt(r.value)} ${r.unit}${r.target ? ` (target ${r.target}: ${r.met ? 'met' : 'missed'})` : ''}`)}</text>`,
    )
    y += 16
  }
  out.push('</svg>')
  return `${out.join('\n')}\n`
}

export interface Report {
  readonly startedAt: string
  readonly quick: boolean
  readonly seed: number
  readonly node: string
  readonly cpus: number
  readonly durationMs: number
  readonly results: readonly Result[]
  readonly failures: readonly { scenario: string; error: string }[]
}

export function writeReport(dir: string, report: Report): string {
  mkdirSync(dir, { recursive: true })
  const json = `${JSON.stringify(report, null, 2)}\n`
  const file = join(dir, `${report.startedAt.replace(/[:.]/g, '-')}${report.quick ? '-quick' : ''}.json`)
  writeFileSync(file, json)
  writeFileSync(join(dir, 'latest.json'), json)
  writeFileSync(join(dir, 'latest.svg'), svg(report.results, `Tandem bench ${report.startedAt}${report.quick ? ' (quick)' : ''}`))
  return file
}
