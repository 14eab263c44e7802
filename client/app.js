// The controller: starts and ends calls, reconnects, falls back, routes events to the page.
//
// URL options: ?transport=ws uses the WebSocket fallback from the start;
// ?transport=webrtc never falls back; ?connect_timeout_s=N (default 10) is how long a
// WebRTC call may take to connect before the fallback is tried.

import { ERROR_CODE, MSG } from "./protocol.js";
import { WebRtcCall } from "./call.js";
import { WebSocketCall } from "./ws-fallback.js";
import { LevelMeter, closeMicrophone, openMicrophone } from "./mic.js";
import { Ui } from "./ui.js";

const params = new URLSearchParams(window.location.search);
const CONNECT_TIMEOUT_MS = 1000 * (Number(params.get("connect_timeout_s")) || 10);
const BACKOFF_S = [1, 2, 4, 8, 15];
const DISCONNECTED_GRACE_MS = 4000;   // WebRTC often recovers from "disconnected" by itself
const AGENT_POLL_MS = 200;
const SPEAKING_LEVEL = 0.01;
const INTERRUPTED_SHOW_MS = 1500;
// The cut reply's last samples may still be playing when the event arrives: a new
// answer can show as "speaking" only after this, so "interrupted" is always seen.
const INTERRUPTED_MIN_MS = 500;

const ui = new Ui();
const state = {
  call: null,          // the live WebRtcCall or WebSocketCall
  mode: null,          // "audio" | "text" while a call is wanted, null when idle
  mic: null,
  meter: null,
  muted: false,
  sessionId: null,     // kept across reconnects so the conversation continues
  attempt: 0,
  fallback: params.get("transport") === "ws" || !("RTCPeerConnection" in window),
  timers: new Set(),
  pendingText: [],     // typed before the text call connected
  interruptedAt: -Infinity,
};

function userId() {
  let id = localStorage.getItem("gateway-user-id");
  if (!id) {
    id = `web-${crypto.getRandomValues(new Uint32Array(2)).join("")}`;
    localStorage.setItem("gateway-user-id", id);
  }
  return id;
}

// How the gateway wants callers to authenticate (GET /client-config): "none", or
// "bearer" with the app's endpoint that hands this page a call token.
let clientConfig = null;

async function gatewayConfig() {
  if (!clientConfig) {
    try {
      const response = await fetch(new URL("/client-config", window.location.origin));
      clientConfig = response.ok ? await response.json() : { auth: "none" };
    } catch {
      clientConfig = { auth: "none" };
    }
  }
  return clientConfig;
}

/** A call token from the app's token endpoint (it knows who the user is: its own
 * session cookie goes along), or null when the gateway needs none. */
async function callToken() {
  const config = await gatewayConfig();
  if (config.auth !== "bearer") return null;
  if (!config.token_url) {
    throw Object.assign(new Error("The gateway needs a call token, and no token endpoint is configured."),
                        { kind: "auth" });
  }
  let response;
  try {
    response = await fetch(config.token_url, { method: "POST", credentials: "include" });
  } catch {
    throw Object.assign(new Error("The token endpoint could not be reached."), { kind: "network" });
  }
  if (!response.ok) {
    throw Object.assign(new Error(`The token endpoint answered ${response.status}.`),
                        { kind: "auth" });
  }
  const body = await response.json();
  if (typeof body?.token !== "string") {
    throw Object.assign(new Error("The token endpoint's answer had no token."), { kind: "auth" });
  }
  return body.token;
}

/** The STUN/TURN servers for the next call (GET /ice-servers: TURN credentials minted
 * for this user), so the browser gathers relay candidates before it makes its offer.
 * A gateway without the endpoint (404) means no servers. */
async function iceServers(token) {
  const url = new URL("/ice-servers", window.location.origin);
  if (!token) url.searchParams.set("user_id", userId());
  let response;
  try {
    response = await fetch(url, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  } catch {
    throw Object.assign(new Error("The gateway could not be reached."), { kind: "network" });
  }
  if (response.status === 401 || response.status === 403) {
    throw Object.assign(new Error(`The gateway refused this page's credential (${response.status}).`),
                        { kind: "auth" });
  }
  if (!response.ok) return [];
  const body = await response.json().catch(() => null);
  return Array.isArray(body?.ice_servers) ? body.ice_servers : [];
}

function later(fn, ms) {
  const timer = setTimeout(() => { state.timers.delete(timer); fn(); }, ms);
  state.timers.add(timer);
}

function clearTimers() {
  state.timers.forEach((timer) => clearTimeout(timer));
  state.timers.clear();
}

async function startCall(mode) {
  if (state.mode) return;
  ui.clearNotice();
  state.mode = mode;
  state.attempt = 0;
  ui.setControls({ call: mode === "audio" ? "voice" : "text" });
  if (mode === "audio") {
    try {
      state.mic = await openMicrophone();
    } catch (error) {
      if (state.mode !== mode) return;
      ui.notice(error.message);
      endCall();
      return;
    }
    if (state.mode !== mode) {
      closeMicrophone(state.mic);
      state.mic = null;
      return;
    }
    state.meter = new LevelMeter(state.mic, (level) => ui.setMicLevel(level));
  }
  await connect();
}

/** The user a call token names (its `sub`): with a token, the gateway takes the user
 * from the credential, and a different one named in the request is refused. */
function tokenSubject(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).sub ?? null;
  } catch {
    return null;
  }
}

function newCall(token, servers) {
  const options = { micStream: state.mic, mode: state.mode, sessionId: state.sessionId, token };
  const user = token ? tokenSubject(token) : userId();
  const call = state.fallback
    ? new WebSocketCall({ ...options, userId: user ?? "me" })
    : new WebRtcCall({ ...options, userId: token ? null : user, iceServers: servers });
  call.addEventListener("message", (event) => onMessage(call, event.detail.message));
  call.addEventListener("state", (event) => onCallState(call, event.detail.state));
  // No RTP for MEDIA_SILENCE_MS: the gateway died (kill -9, a lost machine). Re-offer at
  // once with the session id; behind a load balancer another instance continues it.
  call.addEventListener("media", () => call.live && dropped(call, 0));
  call.addEventListener("track", (event) => ui.playAgentStream(event.detail.stream));
  call.addEventListener("channel", (event) => {
    if (event.detail.state === "open") flushPendingText();
    else if (call.live) dropped(call);
  });
  return call;
}

function connected(call) {
  if (call.transport === "websocket") return Promise.resolve();
  return new Promise((resolve, reject) => {
    const check = () => {
      if (call.state === "connected") resolve();
      else if (["failed", "closed"].includes(call.state)) {
        reject(Object.assign(new Error("ice"), { kind: "ice" }));
      }
    };
    call.addEventListener("state", check);
    check();
  });
}

function timeout(ms) {
  return new Promise((_, reject) => {
    later(() => reject(Object.assign(new Error("timeout"), { kind: "timeout" })), ms);
  });
}

async function connect() {
  ui.setConnection(state.attempt ? "reconnecting" : "connecting");
  ui.setTransport(state.fallback ? "websocket" : "webrtc");
  let token;
  let servers = [];
  try {
    token = await callToken();
    if (!state.fallback) servers = await iceServers(token);
  } catch (error) {
    if (error.kind === "network") return retry();
    ui.notice(error.message);
    endCall();
    return;
  }
  if (!state.mode) return;
  const call = newCall(token, servers);
  state.call = call;
  window.gatewayClient.call = call;
  try {
    await Promise.race([call.start().then(() => connected(call)), timeout(CONNECT_TIMEOUT_MS)]);
  } catch (error) {
    if (state.call === call) await setupFailed(call, error);
    return;
  }
  if (state.call !== call) return;
  call.live = true;
  state.attempt = 0;
  ui.setConnection("connected");
  ui.clearNoticeOnConnect();
  ui.setAgent("listening");
  flushPendingText();
  pollAgent(call);
}

async function setupFailed(call, error) {
  await call.hangUp();
  const webrtcCannotConnect = call.transport === "webrtc" &&
    (error.kind === "ice" || error.kind === "timeout");
  if (error.kind === "unknown_session") {
    state.sessionId = null;
    ui.system("The earlier conversation is no longer available; starting a new one.");
    return connect();
  }
  if (error.kind === "capacity") {
    const waitS = error.retryAfterS || 5;
    ui.notice(`The server is at capacity. Trying again in ${waitS} s…`, "info",
              { untilConnected: true });
    return retry(waitS);
  }
  if (webrtcCannotConnect && params.get("transport") !== "webrtc") {
    state.fallback = true;
    ui.notice("WebRTC could not connect on this network; using the WebSocket fallback.", "info");
    return connect();
  }
  if (["network", "timeout", "ice"].includes(error.kind)) return retry();
  ui.notice(error.message || "The call could not be started.");
  endCall();
}

function retry(waitS) {
  if (!state.mode) return;
  if (state.attempt >= BACKOFF_S.length) {
    ui.notice("Lost the connection to the gateway. Start the call again to retry.");
    endCall();
    return;
  }
  const delayS = waitS ?? BACKOFF_S[state.attempt];
  state.attempt += 1;
  ui.setConnection("reconnecting");
  later(() => state.mode && connect(), delayS * 1000);
}

function dropped(call, waitS) {
  if (state.call !== call || !state.mode) return;
  state.call = null;
  call.hangUp();
  ui.setAgent("idle");
  ui.system("Connection lost; reconnecting to the same conversation…");
  retry(waitS);
}

/** The device's network changed (Wi-Fi to mobile, a VPN came up): the call's ICE path
 * is likely gone, and the gateway cannot restart ICE (aiortc has no ICE restart), so
 * the call moves instead: a new offer continuing the same session. The gateway ends
 * the old call when the new one arrives, should our hang-up not get through. */
function networkChanged() {
  const call = state.call;
  if (!call?.live || call.transport !== "webrtc" || !state.mode) return;
  state.call = null;
  call.hangUp();
  ui.setAgent("idle");
  ui.system("The network changed; moving the call to it…");
  state.attempt = 0;
  connect();
}

function onCallState(call, callState) {
  if (state.call !== call || !call.live) return;
  if (callState === "disconnected") {
    ui.setConnection("disconnected");
    later(() => call.state === "disconnected" && dropped(call), DISCONNECTED_GRACE_MS);
  } else if (callState === "connected") {
    ui.setConnection("connected");
  } else if (["failed", "closed"].includes(callState)) {
    dropped(call);
  }
}

function onMessage(call, message) {
  if (state.call !== call) return;
  switch (message.type) {
    case MSG.SESSION:
      state.sessionId = message.session_id;
      ui.setSession(message.session_id);
      break;
    case MSG.TRANSCRIPT:
      ui.transcript(message.role, message.text, message.final);
      if (message.role === "agent") ui.setAgent("speaking");
      break;
    case MSG.TEXT:
      ui.agentText(message.text, message.final);
      ui.setAgent("speaking");
      break;
    case MSG.TURN_COMPLETE:
      ui.endTurn();
      if (state.mode === "text") ui.setAgent("listening");
      break;
    case MSG.INTERRUPTED:
      ui.interrupted();
      ui.setAgent("interrupted");
      state.interruptedAt = performance.now();
      break;
    case MSG.ERROR:
      onError(call, message);
      break;
  }
}

function onError(call, message) {
  const explain = {
    [ERROR_CODE.AGENT_ERROR]: "The agent ran into a problem: ",
    [ERROR_CODE.AGENT_UNAVAILABLE]: "The agent is unavailable right now: ",
    [ERROR_CODE.INVALID_MESSAGE]: "The gateway could not use a message: ",
  }[message.code] ?? "Something went wrong: ";
  if (message.code === ERROR_CODE.MOVED) {
    // Another tab or device continued this conversation; reconnecting would take it
    // back and end that one in turn.
    ui.notice("This conversation continued on another call (another tab or device).", "info");
  } else {
    ui.notice(explain + message.message);
  }
  if (message.fatal) {
    state.call = null;  // the gateway hangs up; do not reconnect into the same failure
    call.hangUp();
    endCall({ keepNotice: true });
  }
}

async function pollAgent(call) {
  while (state.call === call && state.mode === "audio") {
    const level = await call.agentLevel();
    const now = performance.now();
    if (state.call !== call) return;
    const sinceInterrupted = now - state.interruptedAt;
    if (sinceInterrupted < INTERRUPTED_MIN_MS) {
      // keep showing "interrupted"
    } else if (level > SPEAKING_LEVEL) ui.setAgent("speaking");
    else if (sinceInterrupted > INTERRUPTED_SHOW_MS) ui.setAgent("listening");
    await new Promise((resolve) => setTimeout(resolve, AGENT_POLL_MS));
  }
}

function flushPendingText() {
  while (state.call && state.pendingText.length) {
    if (!state.call.sendText(state.pendingText[0])) return;
    state.pendingText.shift();
  }
}

function sendText(text) {
  ui.addTyped(text);
  state.pendingText.push(text);
  if (!state.mode) startCall("text");
  else flushPendingText();
}

function endCall({ keepNotice = true } = {}) {
  clearTimers();
  const call = state.call;
  state.call = null;
  state.mode = null;
  state.muted = false;
  state.pendingText = [];
  call?.hangUp();
  state.meter?.close();
  state.meter = null;
  closeMicrophone(state.mic);
  state.mic = null;
  ui.stopAgentStream();
  ui.setMicLevel(0);
  ui.setConnection("idle");
  ui.setAgent("idle");
  ui.setTransport(params.get("transport") === "ws" ? "websocket" : "webrtc");
  ui.setControls({ call: "idle" });
  if (!keepNotice) ui.clearNotice();
}

function wireControls() {
  ui.el.call.addEventListener("click", () => {
    if (ui.el.call.dataset.action === "hangup") endCall({ keepNotice: false });
    else startCall("audio");
  });
  ui.el.textMode.addEventListener("click", () => startCall("text"));
  ui.el.mute.addEventListener("click", () => {
    state.muted = !state.muted;
    state.call?.setMuted(state.muted);
    state.mic?.getAudioTracks().forEach((track) => { track.enabled = !state.muted; });
    ui.setControls({ call: "voice", muted: state.muted });
  });
  ui.el.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = ui.el.input.value.trim();
    if (!text) return;
    ui.el.input.value = "";
    sendText(text);
  });
  document.addEventListener("keydown", () => {
    if (ui.el.audio.srcObject && ui.el.audio.paused) ui.el.audio.play().catch(() => {});
  });
  window.addEventListener("pagehide", () => endCall());
  window.addEventListener("online", networkChanged);
  navigator.connection?.addEventListener?.("change", networkChanged);
}

window.gatewayClient = { call: null, state };
wireControls();
endCall();
