/** The browser test pages' settings, from their query string. */

const params = new URLSearchParams(location.search)

/** A setting the page cannot do without: missing or empty throws (a page error the test sees). */
export const required = (name: string): string => {
  const value = params.get(name)
  if (value === null || value === '') throw new Error(`missing ?${name}=`)
  return value
}

/** A setting the page may go without. */
export const optional = (name: string): string | null => params.get(name)
