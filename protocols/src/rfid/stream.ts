import { protoError, type StorelinkError } from '../errors.ts';

/**
 * Shared incremental parser for the two RFID reader framings [RFID-FRAME-1]: takes chunks
 * of any size (fragments, several frames at once), skips noise, and resynchronises after a
 * bad frame by rescanning from the byte after the bad frame's first byte, so a valid frame
 * following (or overlapping) noise is never lost. Never throws on input.
 */

export type Attempt<M> =
  /** Not enough bytes yet for a decision. */
  | { kind: 'need' }
  /** A checked frame of `length` bytes; `msg` undefined when it decoded to an error. */
  | { kind: 'frame'; length: number; msg?: M; error?: StorelinkError }
  /** Bytes at this position cannot start a frame: drop one byte and rescan. */
  | { kind: 'bad'; error?: StorelinkError };

export interface ParsedRfidFrame<M> {
  msg: M;
  /** The frame's bytes as received. */
  raw: Buffer;
}

export interface ParseResult<M> {
  frames: Array<ParsedRfidFrame<M>>;
  errors: StorelinkError[];
}

export abstract class RfidStreamParser<M> {
  private buf: Buffer = Buffer.alloc(0);

  /** Bytes held while waiting for the rest of a frame. */
  get pending(): number {
    return this.buf.length;
  }

  /** Tries to read one frame at `pos`; `isStart` is checked first by the caller. */
  protected abstract attempt(b: Buffer, pos: number): Attempt<M>;
  /** Whether the byte can open a frame (0xA0 head, or a plausible Chafon length). */
  protected abstract isStart(byte: number): boolean;

  push(chunk: Uint8Array): ParseResult<M> {
    this.buf = this.buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buf, chunk]);
    return this.drain();
  }

  /**
   * The line went idle mid-frame: the held bytes are a truncated frame [RFID-FRAME-2]. The
   * first byte is dropped and the rest rescanned, so a false start in noise announcing a long
   * frame cannot stall a real short frame behind it.
   */
  idle(): ParseResult<M> {
    const out: ParseResult<M> = { frames: [], errors: [] };
    while (this.buf.length > 0) {
      out.errors.push(
        protoError('PROTO_ERR_RFID_TRUNCATED', {
          pending: this.buf.length,
          bytes: hexHead(this.buf, 0, this.buf.length),
        }),
      );
      this.buf = this.buf.subarray(1);
      const r = this.drain();
      out.frames.push(...r.frames);
      out.errors.push(...r.errors);
    }
    return out;
  }

  reset(): void {
    this.buf = Buffer.alloc(0);
  }

  private drain(): ParseResult<M> {
    const frames: Array<ParsedRfidFrame<M>> = [];
    const errors: StorelinkError[] = [];
    const b = this.buf;
    let pos = 0;
    // After a bad frame, the bytes skipped while resynchronising are reported once as
    // garbage, not as one CRC error per candidate start (noise would flood the counters).
    let resyncing = false;
    let skipped = 0;
    let skipFrom = 0;
    const endResync = () => {
      if (skipped > 0) {
        errors.push(
          protoError('PROTO_ERR_RFID_GARBAGE', { skipped, bytes: hexHead(b, skipFrom, skipFrom + skipped) }),
        );
      }
      resyncing = false;
      skipped = 0;
    };
    while (pos < b.length) {
      let s = pos;
      while (s < b.length && !this.isStart(b[s] as number)) s++;
      if (s > pos) {
        if (resyncing) skipped += s - pos;
        else
          errors.push(protoError('PROTO_ERR_RFID_GARBAGE', { skipped: s - pos, bytes: hexHead(b, pos, s) }));
        pos = s;
        if (pos >= b.length) break;
      }
      const a = this.attempt(b, pos);
      if (a.kind === 'need') break;
      if (a.kind === 'bad') {
        if (!resyncing) {
          if (a.error) errors.push(a.error);
          resyncing = true;
          skipFrom = pos + 1;
        } else {
          skipped += 1;
        }
        pos += 1;
        continue;
      }
      endResync();
      const raw = Buffer.from(b.subarray(pos, pos + a.length));
      pos += a.length;
      if (a.error) errors.push(a.error);
      else if (a.msg !== undefined) frames.push({ msg: a.msg, raw });
    }
    endResync();
    this.buf = pos >= b.length ? Buffer.alloc(0) : Buffer.from(b.subarray(pos));
    return { frames, errors };
  }
}

export function hexHead(b: Uint8Array, from: number, to: number): string {
  const s = Buffer.from(b.subarray(from, Math.min(to, from + 16))).toString('hex');
  return to - from > 16 ? `${s}...` : s;
}

export function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}

/** Strips `# comments` and whitespace: 'aa bb # x' → Buffer<aa bb>. */
export function hexBytes(annotated: string): Buffer {
  const hex = annotated
    .split('\n')
    .map((l) => l.replace(/#.*$/, ''))
    .join('')
    .replace(/\s+/g, '');
  return Buffer.from(hex, 'hex');
}
