/**
 * The RFID driver's public API (stable: edge/src/cabinet/inventory.ts consumes it).
 * See docs/rfid.md "Driver API".
 *
 * - `present()` is the smoothed view [RFID-SMOOTH-1]: a tag enters on its first read and
 *   leaves only after it was missed in `departRounds` consecutive rounds of its antenna
 *   *and* not read for `departMs`, so one missed read never reports a tag gone.
 * - `inventoryNow()` runs one full round over every configured antenna on demand (the
 *   cabinet's closed-door diff) and returns exactly what the reader answered in that round,
 *   unsmoothed; it also feeds the smoothing like any scheduled round.
 * - `tag.arrived` / `tag.departed` events fire on changes of the smoothed view.
 */

/** EPC as lower-case hex without separators, e.g. '000000000000000000000313'. */
export type Epc = string;

/** 1-based antenna port number as printed on the reader (Chafon bit 0 = antenna 1, R2000 ant 0 = 1). */
export type AntennaId = number;

export interface TagPresence {
  antenna: AntennaId;
  /** Last RSSI the reader reported for the tag, in dBm (negative). */
  rssi: number;
  /** Clock time (ms, the driver's injected `now`) of the last read. */
  lastSeen: number;
}

export interface TagRead {
  epc: Epc;
  antenna: AntennaId;
  rssi: number;
  at: number;
}

/** Result of one full inventory round (every configured antenna once). */
export interface InventoryRound {
  /** Every tag read in this round, the strongest read per EPC (a tag seen by two antennas counts once). */
  tags: ReadonlyMap<Epc, TagPresence>;
  /** Antennas that answered (with or without tags). */
  antennasOk: AntennaId[];
  /** Antennas that failed after retries, with the catalogue code (EDGE_ERR_RFID_*). */
  antennasFailed: Array<{ antenna: AntennaId; code: string }>;
  startedAt: number;
  finishedAt: number;
  /** False when any antenna failed: a closed-door diff must not treat missing tags as taken. */
  complete: boolean;
}

export interface TagArrived {
  epc: Epc;
  antenna: AntennaId;
  rssi: number;
  at: number;
}

export interface TagDeparted {
  epc: Epc;
  /** Antenna it was last seen on. */
  antenna: AntennaId;
  rssi: number;
  /** When it was last read. */
  lastSeen: number;
  /** When the driver decided it was gone. */
  at: number;
}

export interface RfidDriverEvents {
  'tag.arrived': [TagArrived];
  'tag.departed': [TagDeparted];
  /** A round finished (scheduled or on demand). */
  round: [InventoryRound];
  /** Reader link up/down (port opened and reader answering / port lost or reader silent). */
  link: [{ up: boolean; reason?: string }];
  /** A reader or antenna fault raised (active) or cleared; code is EDGE_ERR_RFID_*. */
  fault: [{ code: string; antenna?: AntennaId; active: boolean; message: string }];
}

/** What other edge parts (cabinet sessions) may use; the concrete RfidDriver implements it. */
export interface RfidInventory {
  present(): ReadonlyMap<Epc, TagPresence>;
  inventoryNow(): Promise<InventoryRound>;
  on<K extends keyof RfidDriverEvents>(event: K, fn: (...args: RfidDriverEvents[K]) => void): unknown;
  off<K extends keyof RfidDriverEvents>(event: K, fn: (...args: RfidDriverEvents[K]) => void): unknown;
}
