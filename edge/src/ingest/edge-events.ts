import {
  type EventPayload,
  type EventType,
  eventTypeSpec,
  newId,
  type UnsequencedEvent,
} from '@storelink/protocols';

/** An event the agent itself produces (presence, command results), wrapped like a device event. */
export function edgeEvent<T extends EventType>(
  ctx: { site: string; gateway: string; now: () => number },
  type: T,
  device: string,
  payload: EventPayload<T>,
): UnsequencedEvent {
  const spec = eventTypeSpec(type)!;
  const now = ctx.now();
  return {
    id: newId(now),
    type,
    device,
    gateway: ctx.gateway,
    site: ctx.site,
    ts: now,
    rts: now,
    lane: spec.lane,
    payload,
  };
}
