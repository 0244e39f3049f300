/**
 * V8 settings the command line applies before any other module runs (main.ts imports this first).
 *
 * Allocation-site pretenuring off. V8 watches which object and array literals' objects survive
 * scavenges and, once nearly all of a site's do, allocates that site's objects in the old
 * generation from then on. A server's start (rooms loaded, sockets set up: everything lives)
 * tenures sites that later make short-lived objects per edit; those then sit in the old
 * generation, where a scavenge treats them as live, so the young objects they point to survive
 * and are promoted, and die only in a full GC. On a 100-room probe at 1,000 edits/s, scavenges
 * promoted 230-310 KB each with it and 23-35 KB without, for a pause of 2.2-3.7 ms against
 * 1.3-2.9 (y-websocket-server's: 0.8-2.3 ms, 2-7 KB). `TANDEM_V8_PRETENURING` (a boolean, as
 * config.ts reads them) keeps V8's default. An embedding process can pass
 * `--no-allocation-site-pretenuring` to node itself.
 */

import { setFlagsFromString } from 'node:v8'

const keep = ['1', 'true', 'yes', 'on'].includes((process.env['TANDEM_V8_PRETENURING'] ?? '').trim().toLowerCase())
if (!keep) setFlagsFromString('--no-allocation-site-pretenuring')
