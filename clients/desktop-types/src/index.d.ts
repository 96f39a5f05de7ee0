/**
 * The desktop's types of bff-backoffice-service: every request, response and stream event.
 *
 * `api.d.ts` is generated from `openapi.json` (`./ops/stack types`; never edit it): `paths`,
 * `operations`, `components` and one `Schema<Name>` per schema. This file names the SSE events,
 * which OpenAPI cannot attach to a `text/event-stream` response (the service documents them as
 * the `SseEvent*` components; edge/sse/events.py).
 */
import type { components } from "./api";

export type * from "./api";

/** One event of `GET /bff/backoffice/v1/sse/stream`: its `event:` name, `id:` and parsed `data:`. */
export type SseEvent = components["schemas"]["SseEvent"];
/** `ai.suggestion`, `ai.suggestion.invalidated`, `alert`, `alert.resolved`, `dashboard.hint`, `session`. */
export type SseEventName = SseEvent["event"];
/** The event called `N`. */
export type SseEventOf<N extends SseEventName> = Extract<SseEvent, { event: N }>;
/** The parsed `data:` of the event called `N`. */
export type SseData<N extends SseEventName> = SseEventOf<N>["data"];

export type AiSuggestionEvent = SseEventOf<"ai.suggestion">;
export type AiSuggestionInvalidatedEvent = SseEventOf<"ai.suggestion.invalidated">;
export type AlertEvent = SseEventOf<"alert">;
export type AlertResolvedEvent = SseEventOf<"alert.resolved">;
export type DashboardHintEvent = SseEventOf<"dashboard.hint">;
export type SessionEvent = SseEventOf<"session">;
/** `force_logout` (sign in again), `reconnect` (open a new stream), `replaced` (a newer stream of this device took over). */
export type SessionKind = SseData<"session">["kind"];
