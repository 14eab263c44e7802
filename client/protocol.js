// The wire contract shared with the gateway (docs/protocol.md, docs/websocket.md).
// Message type names are defined here once for the client; gateway/wire/data_channel.py
// and gateway/wire/seed_websocket.py define them once for the server.

export const PROTOCOL_VERSION = 1;

/** Data-channel message types (and, with `events=1`, WebSocket messages). */
export const MSG = Object.freeze({
  TEXT: "text",                   // both ways: a typed turn / agent text in text mode
  SESSION: "session",             // gateway -> client, first message
  TRANSCRIPT: "transcript",       // gateway -> client, partial then final, per role
  TURN_COMPLETE: "turn_complete", // gateway -> client
  INTERRUPTED: "interrupted",     // gateway -> client, the caller barged in
  ERROR: "error",                 // gateway -> client
});

/** Error codes the client explains to the user. */
export const ERROR_CODE = Object.freeze({
  INVALID_MESSAGE: "invalid_message",
  AGENT_ERROR: "agent_error",
  AGENT_UNAVAILABLE: "agent_unavailable",
  AT_CAPACITY: "at_capacity",
  UNKNOWN_SESSION: "unknown_session",
  MOVED: "moved",
  INTERNAL: "internal",
});

/** The gateway sends an RTP packet every 20 ms for the whole call, silence included:
 * this long with none means its process, its machine or the path to it is gone
 * (docs/protocol.md, "Noticing a dead gateway"). ICE consent (RFC 7675) takes ~30 s. */
export const MEDIA_SILENCE_MS = 2000;

/** Signaling endpoints (WHIP-shaped). */
export const CALLS_PATH = "/calls";
export const SDP_CONTENT_TYPE = "application/sdp";
export const MAX_TEXT_CHARS = 4000;

/** The seed sample's WebSocket transport. */
export const WS_PATH = "/ws/";
export const SEED_MIME = Object.freeze({ TEXT: "text/plain", AUDIO: "audio/pcm" });

/** Audio rates at the agent's edge, as in gateway/audio/formats.py. */
export const AGENT_INPUT_RATE_HZ = 16000;
export const AGENT_OUTPUT_RATE_HZ = 24000;

/** A typed turn for the data channel. */
export function textMessage(text) {
  return JSON.stringify({ type: MSG.TEXT, text });
}

/** Parse one gateway message; returns null for anything that is not an object with a type. */
export function parseMessage(raw) {
  try {
    const message = JSON.parse(raw);
    return message && typeof message === "object" && typeof message.type === "string"
      ? message
      : null;
  } catch {
    return null;
  }
}
