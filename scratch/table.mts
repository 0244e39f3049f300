import { limitsTable } from '../server/limits.ts'
console.log(limitsTable())
