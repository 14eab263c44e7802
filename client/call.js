// A WebRTC call to the gateway (docs/protocol.md).
//
// Signaling is WHIP-shaped: POST /calls with the SDP offer (Content-Type:
// application/sdp), 201 with the SDP answer and a Location to DELETE on hang-up.
// The caller creates the one data channel in its offer; the agent's voice arrives as
// the remote audio track. Events: "state" {state}, "message" {message}, "track" {stream},
// "media" {state: "lost"} (no RTP from the gateway for MEDIA_SILENCE_MS once connected).

import {
  CALLS_PATH,
  MEDIA_SILENCE_MS,
  MSG,
  SDP_CONTENT_TYPE,
  parseMessage,
  textMessage,
} from "./protocol.js";

/** How long to wait for our ICE candidates before sending the offer anyway. */
const ICE_GATHERING_TIMEOUT_MS = 3000;
/** How often the inbound RTP counter is read while connected (getStats). */
const MEDIA_POLL_MS = 250;

/** A failed call set-up: `kind` is "capacity", "unknown_session", "http" or "network". */
export class CallError extends Error {
  constructor(kind, message, { status = 0, code = "", retryAfterS = 0 } = {}) {
    super(message);
    this.kind = kind;
    this.status = status;
    this.code = code;
    this.retryAfterS = retryAfterS;
  }
}

/** Turn a non-2xx signaling response into a CallError with the server's message. */
export async function callErrorFrom(response) {
  let code = "";
  let message = `The server answered ${response.status}.`;
  try {
    // RFC 9457 problem details (`code`, `detail`); older gateways: `error`.
    const body = await response.json();
    code = body?.code ?? body?.error?.code ?? "";
    message = body?.detail ?? body?.error?.message ?? message;
  } catch {
    // not JSON: keep the status line
  }
  const retryAfterS = Number.parseInt(response.headers.get("Retry-After") ?? "", 10) || 0;
  let kind = "http";
  if (response.status === 503) kind = "capacity";
  else if (response.status === 401 || response.status === 403) kind = "auth";
  else if (response.status === 429) kind = "capacity";
  else if (code === "unknown_session") kind = "unknown_session";
  return new CallError(kind, message, { status: response.status, code, retryAfterS });
}

function iceGatheringComplete(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => pc.iceGatheringState === "complete" && done();
    const timer = setTimeout(done, ICE_GATHERING_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

export class WebRtcCall extends EventTarget {
  #mediaWatched = false;

  /**
   * @param {object} options
   * @param {MediaStream|null} options.micStream the caller's microphone (null: text only)
   * @param {"audio"|"text"} options.mode how the agent answers
   * @param {string|null} options.sessionId continue this conversation
   * @param {string|null} options.userId who is calling (sessions belong to a user)
   * @param {RTCIceServer[]} options.iceServers STUN/TURN servers, if any
   */
  constructor({
    micStream = null, mode = "audio", sessionId = null, userId = null, iceServers = [],
    token = null,
  } = {}) {
    super();
    this.transport = "webrtc";
    this.micStream = micStream;
    this.mode = mode;
    this.sessionId = sessionId;
    this.userId = userId;
    this.token = token;  // a bearer credential for the gateway, when it asks for one
    this.iceServers = iceServers;
    this.pc = null;
    this.channel = null;
    this.location = null;
    this.state = "new";
  }

  async start() {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    const tracks = this.micStream?.getAudioTracks() ?? [];
    if (tracks.length) {
      pc.addTransceiver(tracks[0], { direction: "sendrecv", streams: [this.micStream] });
    } else {
      pc.addTransceiver("audio", { direction: "sendrecv" });  // the gateway needs audio
    }
    this.channel = pc.createDataChannel("events", { ordered: true });
    this.channel.onmessage = (event) => this.#onChannelMessage(event.data);
    this.channel.onopen = () => this.#emit("channel", { state: "open" });
    this.channel.onclose = () => this.#emit("channel", { state: "closed" });
    pc.ontrack = (event) => {
      this.#emit("track", { stream: event.streams[0] ?? new MediaStream([event.track]) });
    };
    pc.onconnectionstatechange = () => this.#setState(pc.connectionState);
    this.#setState("connecting");
    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringComplete(pc);
    await this.#signal(pc);
  }

  async #signal(pc) {
    const url = new URL(CALLS_PATH, window.location.origin);
    if (this.mode === "text") url.searchParams.set("mode", "text");
    if (this.sessionId) url.searchParams.set("session_id", this.sessionId);
    if (this.userId) url.searchParams.set("user_id", this.userId);
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": SDP_CONTENT_TYPE, ...this.#authHeaders() },
        body: pc.localDescription.sdp,
      });
    } catch {
      throw new CallError("network", "The gateway could not be reached.");
    }
    if (response.status !== 201) throw await callErrorFrom(response);
    const location = response.headers.get("Location");
    if (!location) throw new CallError("http", "The gateway's answer had no Location.");
    this.location = new URL(location, url).href;
    this.sessionId = response.headers.get("X-Session-Id") || this.sessionId;
    const sdp = await response.text();
    if (pc.signalingState === "closed") return;  // hung up while signaling
    await pc.setRemoteDescription({ type: "answer", sdp });
  }

  #authHeaders() {
    return this.token ? { Authorization: `Bearer ${this.token}` } : {};
  }

  #onChannelMessage(raw) {
    const message = parseMessage(raw);
    if (!message) return;
    if (message.type === MSG.SESSION) this.sessionId = message.session_id;
    this.#emit("message", { message });
  }

  #setState(state) {
    if (this.state === state || this.state === "closed") return;
    this.state = state;
    this.#emit("state", { state });
    if (state === "connected" && !this.#mediaWatched) {
      this.#mediaWatched = true;
      this.#watchMedia();
    }
  }

  /** Emits "media" {state: "lost"} once no RTP packet has arrived for
   * MEDIA_SILENCE_MS: a killed gateway process sends nothing more, and nothing tells
   * the browser sooner (ICE "disconnected" came after ~6 s here, "failed" after ~30 s).
   * Time is measured, not counted in polls, so a throttled timer only delays it. */
  async #watchMedia() {
    let packets = -1;
    let lastAt = performance.now();
    while (this.state !== "closed" && this.pc?.signalingState !== "closed") {
      await new Promise((resolve) => setTimeout(resolve, MEDIA_POLL_MS));
      let received = 0;
      try {
        (await this.pc.getStats()).forEach((report) => {
          if (report.type === "inbound-rtp" && report.kind === "audio") {
            received = report.packetsReceived ?? 0;
          }
        });
      } catch {
        return;  // closed meanwhile
      }
      const now = performance.now();
      if (received !== packets) {
        packets = received;
        lastAt = now;
      } else if (now - lastAt >= MEDIA_SILENCE_MS && this.state !== "closed") {
        this.#emit("media", { state: "lost", silentMs: Math.round(now - lastAt) });
        return;
      }
    }
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** Send a typed turn on the data channel; false when the channel is not open. */
  sendText(text) {
    if (this.channel?.readyState !== "open") return false;
    this.channel.send(textMessage(text));
    return true;
  }

  setMuted(muted) {
    this.micStream?.getAudioTracks().forEach((track) => { track.enabled = !muted; });
  }

  /** The agent's audio level as the browser plays it (0..1), from getStats. */
  async agentLevel() {
    if (!this.pc) return 0;
    let level = 0;
    (await this.pc.getStats()).forEach((report) => {
      if (report.type === "inbound-rtp" && report.kind === "audio") {
        level = report.audioLevel ?? 0;
      }
    });
    return level;
  }

  /** Hang up: close the peer connection and tell the gateway (DELETE). */
  async hangUp() {
    this.#setState("closed");
    this.channel?.close();
    this.pc?.close();
    const location = this.location;
    this.location = null;
    if (location) {
      try {
        await fetch(location, { method: "DELETE", keepalive: true, headers: this.#authHeaders() });
      } catch {
        // the gateway notices the closed peer connection by itself
      }
    }
  }
}
