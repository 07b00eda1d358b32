import type { SerialPortStream } from '@serialport/stream';
import { SerialPortMock } from 'serialport';

// @serialport/binding-mock, reached through serialport's re-export (its own package has no
// ESM type declarations under NodeNext resolution).
const MockBinding = SerialPortMock.binding;

type BindingInterface = ConstructorParameters<typeof SerialPortStream>[0]['binding'];

/**
 * Test support: two @serialport/binding-mock ports wired back to back like a null-modem
 * cable (what one writes, the other reads), plus `unplug()`/`plug()` to make the port
 * disappear (open ports fail like a yanked USB adapter, new opens fail) and come back.
 * Not used by runtime code.
 */
export interface MockLink {
  binding: BindingInterface;
  unplug(): void;
  plug(): void;
  /** Every byte written in each direction (a line sniffer). */
  readonly sniffed: { a: Buffer[]; b: Buffer[] };
}

interface OpenPort {
  emitData(data: Buffer): void;
  isOpen: boolean;
  pendingRead: ((err?: Error) => void) | null;
}

let seq = 0;

export function createMockLink(pathA: string, pathB: string): MockLink {
  const tag = `${++seq}`;
  MockBinding.createPort(pathA, { echo: false, record: false });
  MockBinding.createPort(pathB, { echo: false, record: false });
  const open = new Map<string, OpenPort>();
  const peerOf = (p: string): string => (p === pathA ? pathB : pathA);
  let unplugged = false;
  const sniffed = { a: [] as Buffer[], b: [] as Buffer[] };
  const disconnect = (): Error => Object.assign(new Error(`EIO: ${tag} unplugged`), { code: 'EIO' });

  const binding = {
    ...MockBinding,
    list: () => MockBinding.list(),
    async open(options: Parameters<typeof MockBinding.open>[0]) {
      if (unplugged) {
        throw Object.assign(new Error(`ENOENT: no such file or directory, open '${options.path}'`), {
          code: 'ENOENT',
        });
      }
      const port = await MockBinding.open(options);
      const path = options.path;
      const internal = port as unknown as OpenPort;
      const origWrite = port.write.bind(port);
      const origRead = port.read.bind(port);
      port.write = async (buf: Buffer) => {
        if (unplugged) throw disconnect();
        await origWrite(buf);
        (path === pathA ? sniffed.a : sniffed.b).push(Buffer.from(buf));
        const peer = open.get(peerOf(path));
        if (peer?.isOpen) peer.emitData(Buffer.from(buf));
      };
      port.read = async (buffer: Buffer, offset: number, length: number) => {
        if (unplugged) throw disconnect();
        return origRead(buffer, offset, length);
      };
      const origClose = port.close.bind(port);
      port.close = async () => {
        if (open.get(path) === internal) open.delete(path);
        await origClose();
      };
      open.set(path, internal);
      return port;
    },
  } as unknown as BindingInterface;

  return {
    binding,
    sniffed,
    unplug() {
      unplugged = true;
      for (const p of open.values()) {
        const r = p.pendingRead;
        p.pendingRead = null;
        r?.(disconnect()); // the stream sees a read error, not a cancel: a disconnect
      }
    },
    plug() {
      unplugged = false;
    },
  };
}
