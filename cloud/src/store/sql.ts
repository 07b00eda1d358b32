/**
 * The tiny SQL seam the store is written against. Two drivers implement it (PGlite,
 * embedded; node-postgres, a real server) so one SQL dialect, one migration set and one
 * conformance suite cover both (DESIGN §5: "same test suite on both").
 *
 * Value conventions both drivers guarantee, so the store never branches on the driver:
 * - `bigint`/`int8` columns come back as JS numbers (all our int8 values are milliseconds
 *   or sequence numbers, far below 2^53);
 * - `json`/`jsonb` columns come back parsed;
 * - a JSON parameter is passed as a string the caller has already serialised
 *   (node-postgres would turn a JS array into a Postgres array literal).
 */
export interface QueryResult<R> {
  rows: R[];
  /** Rows changed by INSERT/UPDATE/DELETE (0 for SELECT). */
  affected: number;
}

export interface SqlQueryable {
  /** Runs a script of several statements without parameters (migrations). */
  exec(script: string): Promise<void>;
  query<R = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
}

export interface Sql extends SqlQueryable {
  /**
   * Runs `fn` in one transaction: COMMIT when it resolves, ROLLBACK when it throws.
   * Callers must use the `tx` handle inside, never the outer `Sql`.
   */
  transaction<T>(fn: (tx: SqlQueryable) => Promise<T>): Promise<T>;
  readonly dialect: 'pglite' | 'postgres';
  close(): Promise<void>;
}
