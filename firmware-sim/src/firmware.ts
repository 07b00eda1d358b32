import { createHash } from 'node:crypto';
import { compile, type DeviceResult, fleet } from '@storelink/protocols';

/**
 * The firmware slot of a simulated device: `firmware.update` fetches the image over
 * HTTP, checks its size and sha256, "reboots" into it and reports the running version.
 * A device that fails to boot the new image reverts to the previous one and says so
 * (`BOOT_FAILED`, result `{ version: previous, reverted: true }`), as A/B-slot firmware
 * does. Faults are injected on demand for rollout tests (docs/fleet-shadows-rollouts.md).
 */

export type FirmwareFault = 'bad_hash' | 'boot_failure' | 'download_failure';

export const FIRMWARE_RESULT_CODES = {
  BAD_COMMAND: 'BAD_COMMAND',
  /** The image could not be fetched. */
  DOWNLOAD_FAILED: 'DOWNLOAD_FAILED',
  /** The image's size or sha256 does not match the command: not installed. */
  BAD_IMAGE: 'BAD_IMAGE',
  /** The new image did not boot; the device reverted to the previous version. */
  BOOT_FAILED: 'BOOT_FAILED',
} as const;

export interface FirmwareSlotOptions {
  version?: string;
  /** A fault every update hits until cleared (`null`). */
  fault?: FirmwareFault | null;
  /** Simulated reboot time (wall clock). */
  rebootMs?: number;
  /** Download timeout. */
  downloadTimeoutMs?: number;
  fetch?: typeof fetch;
}

const validateImage = compile(fleet.FirmwareImageSchema, 'firmware.update payload');

export class FirmwareSlot {
  version: string;
  fault: FirmwareFault | null;
  /** Updates attempted, installed, failed (any reason). */
  readonly counts = { attempted: 0, installed: 0, failed: 0 };
  private busy = false;
  private readonly rebootMs: number;
  private readonly downloadTimeoutMs: number;
  private readonly fetchFn: typeof fetch;

  constructor(opts: FirmwareSlotOptions = {}) {
    this.version = opts.version ?? '1.0.0';
    this.fault = opts.fault ?? null;
    this.rebootMs = opts.rebootMs ?? 50;
    this.downloadTimeoutMs = opts.downloadTimeoutMs ?? 30_000;
    this.fetchFn = opts.fetch ?? fetch;
  }

  /** The `firmware.update` handler. */
  async update(payload: unknown): Promise<DeviceResult> {
    const r = validateImage.check(payload);
    if (!r.ok) return this.fail(FIRMWARE_RESULT_CODES.BAD_COMMAND, r.error.message);
    const image = r.value;
    if (this.busy) return this.fail(FIRMWARE_RESULT_CODES.BAD_COMMAND, 'an update is already in progress');
    this.busy = true;
    this.counts.attempted++;
    try {
      const result = await this.install(image);
      if (result.status === 'ok') this.counts.installed++;
      else this.counts.failed++;
      return result;
    } finally {
      this.busy = false;
    }
  }

  private async install(image: fleet.FirmwareImage): Promise<DeviceResult> {
    let bytes: Buffer;
    try {
      if (this.fault === 'download_failure') throw new Error('connection reset (injected fault)');
      bytes = await this.download(image.url);
    } catch (e) {
      return this.fail(FIRMWARE_RESULT_CODES.DOWNLOAD_FAILED, `${image.url}: ${(e as Error).message}`);
    }
    if (this.fault === 'bad_hash' && bytes.length > 0) {
      // A flipped bit in transit: exactly what the hash check is for.
      bytes = Buffer.from(bytes);
      bytes[0] = bytes[0]! ^ 0x01;
    }
    if (bytes.length !== image.size)
      return this.fail(
        FIRMWARE_RESULT_CODES.BAD_IMAGE,
        `image is ${bytes.length} bytes, expected ${image.size}`,
      );
    const sha = createHash('sha256').update(bytes).digest('hex');
    if (sha !== image.sha256)
      return this.fail(FIRMWARE_RESULT_CODES.BAD_IMAGE, `image sha256 ${sha} does not match ${image.sha256}`);
    const previousVersion = this.version;
    await new Promise((r) => setTimeout(r, this.rebootMs).unref());
    if (this.fault === 'boot_failure') {
      // The watchdog sends it back to the previous slot.
      return {
        status: 'error',
        code: FIRMWARE_RESULT_CODES.BOOT_FAILED,
        message: `image ${image.version} did not boot; reverted to ${previousVersion}`,
        result: { version: previousVersion, previousVersion, reverted: true },
      };
    }
    this.version = image.version;
    return { status: 'ok', result: { version: image.version, previousVersion } };
  }

  /** Every answer says which version runs now, so the fleet's reported shadow stays true. */
  private fail(code: string, message: string): DeviceResult {
    return { status: 'error', code, message: message.slice(0, 1024), result: { version: this.version } };
  }

  private async download(url: string): Promise<Buffer> {
    const res = await this.fetchFn(url, { signal: AbortSignal.timeout(this.downloadTimeoutMs) });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return Buffer.from(await res.arrayBuffer());
  }
}
