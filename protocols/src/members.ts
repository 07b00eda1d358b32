import { type Static, Type } from '@sinclair/typebox';
import { registerEventType } from './events.ts';

/**
 * Member-facing events shared by on-device vision (issue 9) and the members/coupons
 * service (issue 7). A recognition carries an id and a score — never an image or an
 * embedding [VISION-PRIVACY-1]: the schema has no field that could hold one, and
 * `additionalProperties: false` refuses anything else.
 */
export const MEMBER_RECOGNIZED = 'member.recognized';

export const MemberRecognizedPayload = Type.Object(
  {
    /** Device-chosen id for at-least-once resends [INGEST-DEDUPE-1]. */
    id: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,64}$' })),
    ts: Type.Optional(Type.Integer({ minimum: 0 })),
    /** The member id the gallery entry belongs to (cloud-assigned). */
    memberId: Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,64}$' }),
    /** Cosine similarity of the best gallery match, 0..1. */
    similarity: Type.Number({ minimum: 0, maximum: 1 }),
    /** Camera device id that saw the face. */
    camera: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }),
    zone: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' })),
    /** Gallery version the match was made against (erasure is confirmed by version). */
    galleryVersion: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);
export type MemberRecognized = Static<typeof MemberRecognizedPayload>;

registerEventType(MEMBER_RECOGNIZED, {
  lane: 'event',
  // A camera that runs inference itself publishes this; the edge's own vision pipeline
  // publishes it through the same ingest path under the camera's device id.
  source: 'device',
  payload: MemberRecognizedPayload,
  description: 'a consenting member was recognised by a camera (id and score only, never a face)',
});
