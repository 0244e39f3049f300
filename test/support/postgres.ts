/**
 * PostgreSQL for tests: each test file gets a database of its own (`CREATE DATABASE`), dropped when
 * it is done, and each store opened in it a schema of its own, so tests never see each other's rows.
 * The server is `TANDEM_TEST_POSTGRES_URL` (default: the machine's, 127.0.0.1:5432, user postgres,
 * trust auth); see the README's "Running the distributed tests elsewhere".
 */

import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { afterAll } from 'vitest'

export const POSTGRES_URL = process.env.TANDEM_TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/postgres'

const withDatabase = (url: string, database: string): string => {
  const u = new URL(url)
  u.pathname = `/${database}`
  return u.toString()
}

/** The URL of a schema of its own in `databaseUrl` (created on first use by the store's migration). */
export const schemaUrl = (databaseUrl: string, schema: string): string => {
  const u = new URL(databaseUrl)
  u.searchParams.set('options', `-c search_path=${schema}`)
  return u.toString()
}

async function admin<T>(run: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: POSTGRES_URL })
  await client.connect()
  try {
    return await run(client)
  } finally {
    await client.end()
  }
}

export interface TestDatabase {
  readonly url: string
  /** A fresh schema in this database, created now; its URL. */
  schema(): Promise<string>
}

/** A database for this test file, dropped after it. */
export function testDatabase(): () => Promise<TestDatabase> {
  let created: Promise<TestDatabase> | null = null
  let name: string | null = null
  afterAll(async () => {
    if (name !== null) await admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))
  })
  return () =>
    (created ??= (async () => {
      name = `tandem_test_${process.pid}_${randomBytes(4).toString('hex')}`
      await admin((c) => c.query(`CREATE DATABASE ${name}`))
      const url = withDatabase(POSTGRES_URL, name)
      let schemas = 0
      return {
        url,
        async schema() {
          const schema = `s${++schemas}_${randomBytes(3).toString('hex')}`
          const client = new pg.Client({ connectionString: url })
          await client.connect()
          await client.query(`CREATE SCHEMA ${schema}`)
          await client.end()
          return schemaUrl(url, schema)
        },
      }
    })())
}
