import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FirmwareSlot } from './firmware.ts';

/** The simulated firmware slot against a real HTTP server serving the images. */
const IMAGE = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 31) & 0xff));
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
let server: Server;
let base: string;
let downloads = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    downloads++;
    if (req.url === '/fw/2.0.0.bin') res.writeHead(200).end(IMAGE);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address();
  base = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}/fw`;
});
afterAll(() => new Promise((r) => server.close(r)));

const good = () => ({ version: '2.0.0', url: `${base}/2.0.0.bin`, sha256: sha(IMAGE), size: IMAGE.length });

describe('firmware slot', () => {
  it('downloads, checks size and sha256, reboots into the image and reports both versions', async () => {
    const slot = new FirmwareSlot({ version: '1.0.0', rebootMs: 1 });
    const before = downloads;
    expect(await slot.update(good())).toEqual({
      status: 'ok',
      result: { version: '2.0.0', previousVersion: '1.0.0' },
    });
    expect(downloads).toBe(before + 1);
    expect(slot.version).toBe('2.0.0');
    expect(slot.counts).toEqual({ attempted: 1, installed: 1, failed: 0 });
  });

  it('refuses an image whose hash or size does not match, and keeps running the old one', async () => {
    const slot = new FirmwareSlot({ version: '1.0.0', rebootMs: 1 });
    const wrongHash = await slot.update({ ...good(), sha256: sha(Buffer.from('x')) });
    expect(wrongHash).toMatchObject({ status: 'error', code: 'BAD_IMAGE', result: { version: '1.0.0' } });
    const wrongSize = await slot.update({ ...good(), size: IMAGE.length + 1 });
    expect(wrongSize).toMatchObject({ status: 'error', code: 'BAD_IMAGE' });
    expect(wrongSize.message).toContain(`${IMAGE.length} bytes`);
    // Injected: a bit flipped in transit.
    slot.fault = 'bad_hash';
    expect(await slot.update(good())).toMatchObject({ status: 'error', code: 'BAD_IMAGE' });
    expect(slot.version).toBe('1.0.0');
    expect(slot.counts).toEqual({ attempted: 3, installed: 0, failed: 3 });
  });

  it('a boot failure reverts to the previous version and says so', async () => {
    const slot = new FirmwareSlot({ version: '1.0.0', rebootMs: 1, fault: 'boot_failure' });
    expect(await slot.update(good())).toEqual({
      status: 'error',
      code: 'BOOT_FAILED',
      message: 'image 2.0.0 did not boot; reverted to 1.0.0',
      result: { version: '1.0.0', previousVersion: '1.0.0', reverted: true },
    });
    expect(slot.version).toBe('1.0.0');
    slot.fault = null;
    expect((await slot.update(good())).status).toBe('ok');
    expect(slot.version).toBe('2.0.0');
  });

  it('reports download failures and malformed commands without changing anything', async () => {
    const slot = new FirmwareSlot({ version: '1.0.0', rebootMs: 1 });
    expect(await slot.update({ ...good(), url: `${base}/missing.bin` })).toMatchObject({
      status: 'error',
      code: 'DOWNLOAD_FAILED',
      message: expect.stringContaining('HTTP 404'),
    });
    slot.fault = 'download_failure';
    expect(await slot.update(good())).toMatchObject({ code: 'DOWNLOAD_FAILED' });
    expect(await slot.update({ version: '2', url: 'ftp://x' })).toMatchObject({ code: 'BAD_COMMAND' });
    expect(slot.version).toBe('1.0.0');
  });

  it('refuses a second update while one is in progress', async () => {
    const slot = new FirmwareSlot({ version: '1.0.0', rebootMs: 200 });
    const first = slot.update(good());
    const second = await slot.update(good());
    expect(second).toMatchObject({
      status: 'error',
      code: 'BAD_COMMAND',
      message: 'an update is already in progress',
    });
    expect((await first).status).toBe('ok');
  });
});
