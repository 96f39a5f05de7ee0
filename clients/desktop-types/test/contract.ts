// Compile-time assertions (`tsc --noEmit`, run by `./ops/stack types --check`): the generated
// types still say what API_CONTRACT §6 pins. A renamed component or event fails here.
import type { SessionKind, SseData, SseEvent, SseEventName, paths } from "../src";

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Expect<T extends true> = T;

export type Names = Expect<
  Equal<
    SseEventName,
    "ai.suggestion" | "ai.suggestion.invalidated" | "alert" | "alert.resolved" | "dashboard.hint" | "session"
  >
>;
export type Kinds = Expect<Equal<SessionKind, "force_logout" | "reconnect" | "replaced">>;

/** How the desktop reads a frame: `event:` and `data:` of an EventSource message. */
export function parse(event: string, data: string, id?: string): SseEvent {
  return { event, data: JSON.parse(data), id } as SseEvent;
}

export function describe(received: SseEvent): string {
  switch (received.event) {
    case "alert":
      return `alert ${received.data.alertId} at ${received.data.propertyId}`;
    case "alert.resolved":
      return `alert ${received.data.alertId} resolved`;
    case "ai.suggestion":
      return `suggestion ${received.data.suggestionId}: ${received.data.title}`;
    case "ai.suggestion.invalidated":
      return `suggestion ${received.data.suggestionId} gone (${received.data.reason})`;
    case "dashboard.hint":
      return `stale widgets ${received.data.widgets.join(",")}`;
    case "session":
      return `session ${received.data.kind} ${received.data.reason ?? ""}`;
  }
}

export const hintData: SseData<"dashboard.hint">["views"] = [];
export type StreamQuery = paths["/bff/backoffice/v1/sse/stream"]["get"]["parameters"]["query"];
