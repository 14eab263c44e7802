// A client of ADK's bidi-demo WebSocket protocol (see README.md): written for this
// project's tests from the streaming guide's description of the demo's client.

// Part 5 documents the same 16 kHz AudioWorklet recorder the seed's client uses.
import { startAudioRecorderWorklet } from "/static/js/audio-recorder.js";

const userId = "demo-user";
const sessionId = "demo-session-" + Math.random().toString(36).substring(7);
let websocket = null;
let isAudio = false;
let agentBubble = null;   // the agent's words this turn (text parts or output transcription)
let userBubble = null;    // the caller's transcribed speech this turn
window.__turns = 0;
window.__audioBytes = 0;

const messageForm = document.getElementById("messageForm");
const messageInput = document.getElementById("message");
const messagesDiv = document.getElementById("messages");
const sendButton = document.getElementById("sendButton");
const startAudioButton = document.getElementById("startAudioButton");

function bubble(isUser, text) {
  const div = document.createElement("div");
  div.className = "message " + (isUser ? "user" : "agent");
  const p = document.createElement("p");
  p.className = "bubble-text";
  p.textContent = text;
  div.appendChild(p);
  messagesDiv.appendChild(div);
  return p;
}

// A partial is appended to the bubble; a finished transcription replaces it.
function showWords(current, isUser, text, finished) {
  if (current === null) return bubble(isUser, text);
  current.textContent = finished ? text : current.textContent + text;
  return current;
}

function connectWebsocket() {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  websocket = new WebSocket(scheme + "//" + window.location.host + "/ws/" + userId + "/" + sessionId);
  websocket.onopen = () => { sendButton.disabled = false; };
  websocket.onmessage = (message) => {
    const adkEvent = JSON.parse(message.data);
    console.log("[AGENT TO CLIENT]", adkEvent.author, Object.keys(adkEvent).join(","));
    if (adkEvent.turnComplete === true || adkEvent.interrupted === true) {
      if (adkEvent.turnComplete) window.__turns++;
      agentBubble = null;
      userBubble = null;
      return;
    }
    const heard = adkEvent.inputTranscription;
    if (heard && heard.text) {
      userBubble = showWords(userBubble, true, heard.text, heard.finished);
      if (heard.finished) userBubble = null;
    }
    const spoken = adkEvent.outputTranscription;
    if (spoken && spoken.text) {
      agentBubble = showWords(agentBubble, false, spoken.text, spoken.finished);
    }
    for (const part of (adkEvent.content && adkEvent.content.parts) || []) {
      if (part.inlineData && part.inlineData.mimeType.startsWith("audio/pcm")) {
        window.__audioBytes += base64ToArray(part.inlineData.data).byteLength;
      }
      if (part.text && !part.thought) {
        agentBubble = showWords(agentBubble, false, part.text, !adkEvent.partial);
      }
    }
  };
  websocket.onclose = () => {
    sendButton.disabled = true;
    setTimeout(connectWebsocket, 5000);
  };
}

messageForm.onsubmit = (event) => {
  event.preventDefault();
  const text = messageInput.value.trim();
  if (text && websocket.readyState === WebSocket.OPEN) {
    bubble(true, text);
    messageInput.value = "";
    websocket.send(JSON.stringify({ type: "text", text: text }));
  }
  return false;
};

// The demo's audio arrives as base64url (pydantic's bytes); convert, pad, decode.
function base64ToArray(base64) {
  let standard = base64.replace(/-/g, "+").replace(/_/g, "/");
  while (standard.length % 4) standard += "=";
  const binary = window.atob(standard);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

// Caller audio goes up as binary frames of 16 kHz s16 PCM, without reconnecting.
startAudioButton.addEventListener("click", async () => {
  startAudioButton.disabled = true;
  await startAudioRecorderWorklet((pcm) => {
    if (isAudio && websocket.readyState === WebSocket.OPEN) websocket.send(pcm);
  });
  isAudio = true;
});

connectWebsocket();
