// The page: renders call state and the conversation. Knows the DOM, not the network.

const CONNECTION_LABELS = {
  idle: "Not connected",
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  disconnected: "Connection unstable…",
  failed: "Connection failed",
};

const AGENT_LABELS = {
  idle: "Agent idle",
  listening: "Listening",
  speaking: "Agent speaking",
  interrupted: "Interrupted",
};

export class Ui {
  constructor(doc = document) {
    const $ = (id) => doc.getElementById(id);
    this.doc = doc;
    this.el = {
      connection: $("connection-state"),
      transport: $("transport-label"),
      agent: $("agent-indicator"),
      agentText: $("agent-indicator-text"),
      micLevel: $("mic-level"),
      notice: $("notice"),
      noticeText: $("notice-text"),
      noticeClose: $("notice-close"),
      conversation: $("conversation"),
      composer: $("composer"),
      input: $("text-input"),
      send: $("send-button"),
      call: $("call-button"),
      mute: $("mute-button"),
      textMode: $("text-mode-button"),
      session: $("session-info"),
      audio: $("agent-audio"),
    };
    this.open = { user: null, agent: null };
    this.el.noticeClose.addEventListener("click", () => this.clearNotice());
  }

  setConnection(state) {
    this.el.connection.dataset.state = state;
    this.el.connection.textContent = CONNECTION_LABELS[state] ?? state;
  }

  setTransport(transport) {
    this.el.transport.hidden = transport !== "websocket";
  }

  setAgent(state) {
    if (this.el.agent.dataset.state === state) return;
    this.el.agent.dataset.state = state;
    this.el.agentText.textContent = AGENT_LABELS[state] ?? state;
  }

  get agentState() {
    return this.el.agent.dataset.state;
  }

  setMicLevel(level) {
    this.el.micLevel.value = level;
  }

  /** Show a message; one `untilConnected` goes away by itself once a call connects. */
  notice(text, kind = "error", { untilConnected = false } = {}) {
    this.el.notice.dataset.kind = kind;
    this.el.notice.dataset.untilConnected = String(untilConnected);
    this.el.noticeText.textContent = text;
    this.el.notice.hidden = false;
  }

  clearNoticeOnConnect() {
    if (this.el.notice.dataset.untilConnected === "true") this.clearNotice();
  }

  clearNotice() {
    this.el.notice.hidden = true;
    this.el.noticeText.textContent = "";
  }

  /** Buttons for: no call ("idle"), a call being set up or live ("voice" / "text"). */
  setControls({ call, muted = false }) {
    const active = call !== "idle";
    this.el.call.dataset.action = active ? "hangup" : "start";
    this.el.call.textContent = active ? "Hang up" : "Start voice call";
    this.el.mute.disabled = call !== "voice";
    this.el.mute.setAttribute("aria-pressed", String(muted && call === "voice"));
    this.el.mute.textContent = muted && call === "voice" ? "Unmute" : "Mute";
    this.el.textMode.disabled = active;
  }

  setSession(sessionId) {
    this.el.session.textContent = sessionId ? `Conversation ${sessionId}` : "";
  }

  playAgentStream(stream) {
    this.el.audio.srcObject = stream;
    this.el.audio.play().catch(() => {
      this.notice("Press any key or click to hear the agent (the browser blocked autoplay).",
                  "info");
    });
  }

  stopAgentStream() {
    this.el.audio.srcObject = null;
  }

  #message(role, cls = "") {
    this.el.conversation.querySelector(".hint")?.remove();
    const item = this.doc.createElement("li");
    item.className = `msg ${role} ${cls}`.trim();
    const who = this.doc.createElement("span");
    who.className = "who";
    who.textContent = role === "user" ? "You" : role === "agent" ? "Agent" : "";
    const body = this.doc.createElement("span");
    body.className = "body";
    item.append(who, body);
    this.el.conversation.append(item);
    this.el.conversation.scrollTop = this.el.conversation.scrollHeight;
    return item;
  }

  #body(item) {
    return item.querySelector(".body");
  }

  /** A typed turn from the caller, shown at once. */
  addTyped(text) {
    this.#body(this.#message("user", "typed")).textContent = text;
  }

  /** Speech recognized: a partial is replaced by the next message of its role until final. */
  transcript(role, text, final) {
    const item = this.open[role] ?? this.#message(role, "partial");
    this.open[role] = item;
    this.#body(item).textContent = text;
    if (final) this.#close(role);
  }

  /** Agent text in text mode: chunks append, the final message holds the whole text. */
  agentText(text, final) {
    const item = this.open.agent ?? this.#message("agent", "partial");
    this.open.agent = item;
    const body = this.#body(item);
    body.textContent = final ? text : body.textContent + text;
    if (final) this.#close("agent");
  }

  #close(role) {
    this.open[role]?.classList.remove("partial");
    this.open[role] = null;
  }

  endTurn() {
    this.#close("user");
    this.#close("agent");
  }

  interrupted() {
    const item = this.open.agent;
    if (item) {
      this.#body(item).textContent += " …";
      item.classList.add("interrupted");
    }
    this.#close("agent");
  }

  system(text) {
    this.#body(this.#message("system")).textContent = text;
  }
}
