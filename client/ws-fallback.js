// The WebSocket fallback, for networks where WebRTC cannot connect.
//
// Speaks the seed sample's protocol (docs/websocket.md) on GET /ws/{user_id}: the
// microphone is captured with an AudioWorklet at 16 kHz and sent as base64 PCM, the
// agent's 24 kHz PCM is played with an AudioWorklet. `events=1` asks the gateway for
// the data channel's JSON events, so the app handles both transports alike.
// Same interface and events as WebRtcCall: "state", "message".

import {
  AGENT_INPUT_RATE_HZ,
  AGENT_OUTPUT_RATE_HZ,
  MSG,
  SEED_MIME,
  WS_PATH,
  parseMessage,
} from "./protocol.js";
import { CallError } from "./call.js";

const WORKLETS_URL = new URL("./pcm-worklets.js", import.meta.url);
const OPEN_TIMEOUT_MS = 8000;
/** Close codes 4000 + HTTP status: the gateway refused the session (an error came first). */
const REFUSED_BASE = 4000;

function toBase64(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function fromBase64(data) {
  const binary = atob(data);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

export class WebSocketCall extends EventTarget {
  constructor({
    micStream = null, mode = "audio", sessionId = null, userId = "web", token = null,
  } = {}) {
    super();
    this.transport = "websocket";
    this.micStream = micStream;
    this.mode = mode;
    this.sessionId = sessionId;
    this.userId = userId;
    this.token = token;
    this.socket = null;
    this.capture = null;
    this.playback = null;
    this.playbackState = { bufferedS: 0, peak: 0 };
    this.state = "new";
    this.lastError = null;
  }

  async start() {
    this.#setState("connecting");
    if (this.mode === "audio") this.playback = await this.#startPlayback();
    if (this.micStream) this.capture = await this.#startCapture(this.micStream);
    await this.#open();
  }

  #url() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    const url = new URL(`${scheme}//${window.location.host}${WS_PATH}` +
                        encodeURIComponent(this.userId));
    url.searchParams.set("is_audio", String(this.mode === "audio"));
    url.searchParams.set("events", "1");
    if (this.sessionId) url.searchParams.set("session_id", this.sessionId);
    return url;
  }

  /** Resolves once the gateway's `session` message says the agent session is open. */
  #open() {
    return new Promise((resolve, reject) => {
      // A browser cannot set headers on a WebSocket: the credential travels as a
      // subprotocol, with the plain "bearer" one for the gateway to select.
      const protocols = this.token ? ["bearer", `bearer.${this.token}`] : [];
      const socket = new WebSocket(this.#url(), protocols);
      this.socket = socket;
      const timer = setTimeout(() => {
        socket.close();
        reject(new CallError("network", "The gateway's WebSocket did not open."));
      }, OPEN_TIMEOUT_MS);
      this.opened = () => {
        clearTimeout(timer);
        this.#setState("connected");
        resolve();
      };
      socket.onmessage = (event) => this.#onMessage(event.data);
      socket.onclose = (event) => {
        clearTimeout(timer);
        if (this.state === "connecting") {
          reject(this.#refusal(event.code) ??
                 new CallError("network", "The gateway's WebSocket could not connect."));
        }
        this.#setState(event.code === 1000 || event.code >= REFUSED_BASE ? "closed" : "failed");
      };
    });
  }

  #refusal(code) {
    if (code < REFUSED_BASE) return null;
    const status = code - REFUSED_BASE;
    const message = this.lastError?.message ?? `The gateway refused the session (${status}).`;
    const kind = status === 503 ? "capacity" : status === 404 ? "unknown_session" : "http";
    return new CallError(kind, message, { status, code: this.lastError?.code ?? "" });
  }

  #onMessage(raw) {
    let seed = null;
    try {
      seed = JSON.parse(raw);
    } catch {
      return;
    }
    if (seed?.mime_type === SEED_MIME.AUDIO) {
      this.playback?.port.postMessage(fromBase64(seed.data));
      return;
    }
    const message = parseMessage(raw);
    if (!message) return;
    if (message.type === MSG.SESSION) {
      this.sessionId = message.session_id;
      this.opened?.();
    }
    if (message.type === MSG.INTERRUPTED) this.playback?.port.postMessage("flush");
    if (message.type === MSG.ERROR) this.lastError = message;
    this.dispatchEvent(new CustomEvent("message", { detail: { message } }));
  }

  async #startPlayback() {
    const context = new AudioContext({ sampleRate: AGENT_OUTPUT_RATE_HZ });
    await context.audioWorklet.addModule(WORKLETS_URL);
    const node = new AudioWorkletNode(context, "pcm-playback", { outputChannelCount: [1] });
    node.port.onmessage = (event) => { this.playbackState = event.data; };
    node.connect(context.destination);
    await context.resume();
    this.playbackContext = context;
    return node;
  }

  async #startCapture(stream) {
    const context = new AudioContext({ sampleRate: AGENT_INPUT_RATE_HZ });
    await context.audioWorklet.addModule(WORKLETS_URL);
    const source = context.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(context, "pcm-capture");
    node.port.onmessage = (event) => this.#sendSeed(SEED_MIME.AUDIO, toBase64(event.data));
    source.connect(node);
    await context.resume();
    this.captureContext = context;
    return node;
  }

  #sendSeed(mimeType, data) {
    if (this.socket?.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify({ mime_type: mimeType, data }));
    return true;
  }

  #setState(state) {
    if (this.state === state || this.state === "closed") return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state } }));
  }

  sendText(text) {
    return this.#sendSeed(SEED_MIME.TEXT, text);
  }

  setMuted(muted) {
    this.micStream?.getAudioTracks().forEach((track) => { track.enabled = !muted; });
  }

  /** The agent's audio level as played (0..1): the playback worklet's last peak. */
  async agentLevel() {
    return this.playbackState.bufferedS > 0 ? Math.max(this.playbackState.peak, 0.05) : 0;
  }

  async hangUp() {
    this.#setState("closed");
    this.socket?.close(1000);
    this.capture?.disconnect();
    this.playback?.disconnect();
    await Promise.all([this.captureContext?.close(), this.playbackContext?.close()]);
  }
}
