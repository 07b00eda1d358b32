import { type Stack, waitFor } from './stack.ts';

export interface CommandView {
  id: string;
  status: string;
  result?: unknown;
  code?: string | null;
  message?: string | null;
  rttMs?: number | null;
}

/** Sends a command through the cloud API (the cloud signs it and publishes it to the gateway). */
export async function sendCommand(
  stack: Stack,
  body: { type: string; payload?: unknown; target?: { device?: string }; ttlMs?: number },
): Promise<CommandView> {
  const r = await stack.cloudApi(`/api/v1/gateways/${stack.gateway}/commands`, {
    method: 'POST',
    body: JSON.stringify(body),
  });
  if (r.status !== 202) throw new Error(`send command: HTTP ${r.status} ${await r.text()}`);
  return (await r.json()) as CommandView;
}

export async function getCommand(stack: Stack, id: string): Promise<CommandView> {
  const r = await stack.cloudApi(`/api/v1/commands/${id}`);
  if (!r.ok) throw new Error(`get command: HTTP ${r.status} ${await r.text()}`);
  return (await r.json()) as CommandView;
}

/** Waits until the command has a final status (anything but pending/sent). */
export async function waitCommandDone(stack: Stack, id: string, timeoutMs = 30_000): Promise<CommandView> {
  return waitFor(
    async () => {
      const c = await getCommand(stack, id);
      return c.status !== 'pending' && c.status !== 'sent' ? c : undefined;
    },
    timeoutMs,
    `command ${id} to complete`,
    100,
  );
}
