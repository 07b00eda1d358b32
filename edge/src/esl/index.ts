import { esl } from '@storelink/protocols';
import type { CommandRouter } from '../commands/index.ts';
import type { EslManager } from './manager.ts';

export * from './manager.ts';
export * from './render.ts';

/**
 * Registers the ESL gateway commands on the router and starts the periodic sweep
 * (silent tags, alerts, tag status); returns the stop function.
 */
export function startEslSweep(m: EslManager, commands: CommandRouter, everyMs = 30_000): () => void {
  commands.registerExecutor(esl.ESL_CAMPAIGN, (cmd) => m.campaign(cmd.payload as esl.EslCampaign));
  commands.registerExecutor(esl.ESL_CANCEL, (cmd) =>
    m.cancel((cmd.payload as { campaignId: string }).campaignId),
  );
  const t = setInterval(() => {
    m.sweep().catch(() => undefined);
  }, everyMs);
  t.unref();
  return () => clearInterval(t);
}
