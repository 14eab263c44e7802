// A client of the seed sample's WebSocket protocol (see ../../README.md): written for
// this project's tests, it behaves on the wire as the sample's app.js does.

import { startAudioPlayerWorklet } from "./audio-player.js";
import { startAudioRecorderWorklet } from "./audio-recorder.js";

const sessionId = Math.random().toString().substring(10);
const wsUrl = "ws://" + window.location.host + "/ws/" + sessionId;
let websocket = null;
let isAudio = false;
let currentMessageId = null;
let audioPlayerNode = null;

const messageForm = document.getElementById("messageForm");
const messageInput = document.getElementById("message");
const messagesDiv = document.getElementById("messages");
const sendButton = document.getElementById("sendButton");
const startAudioButton = document.getElementById("startAudioButton");

function connectWebsocket() {
  websocket = new WebSocket(wsUrl + "?is_audio=" + isAudio);
  websocket.onopen = () => {
    messagesDiv.textContent = "Connection opened";
    sendButton.disabled = false;
  };
  websocket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    console.log("[AGENT TO CLIENT]", message.mime_type ?? JSON.stringify(message));
    if (message.turn_complete && message.turn_complete === true) {
      currentMessageId = null;
      return;
    }
    if (message.mime_type === "audio/pcm" && audioPlayerNode) {
      audioPlayerNode.port.postMessage(base64ToArrayBuffer(message.data));
    }
    if (message.mime_type === "text/plain") {
      if (currentMessageId === null) {
        currentMessageId = Math.random().toString(36).substring(7);
        const paragraph = document.createElement("p");
        paragraph.id = currentMessageId;
        messagesDiv.appendChild(paragraph);
      }
      document.getElementById(currentMessageId).textContent += message.data;
      messagesDiv.scrollTop = messagesDiv.scrollHeight;
    }
  };
  websocket.onclose = () => {
    sendButton.disabled = true;
    setTimeout(connectWebsocket, 5000);
  };
}

messageForm.onsubmit = (event) => {
  event.preventDefault();
  const text = messageInput.value;
  if (text) {
    const paragraph = document.createElement("p");
    paragraph.textContent = "> " + text;
    messagesDiv.appendChild(paragraph);
    messageInput.value = "";
    sendMessage({ mime_type: "text/plain", data: text });
  }
  return false;
};

function sendMessage(message) {
  if (websocket && websocket.readyState === WebSocket.OPEN) {
    websocket.send(JSON.stringify(message));
  }
}

function base64ToArrayBuffer(base64) {
  const binary = window.atob(base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

function arrayBufferToBase64(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = "";
  for (let i = 0; i < bytes.byteLength; i++) binary += String.fromCharCode(bytes[i]);
  return window.btoa(binary);
}

function audioRecorderHandler(pcmData) {
  sendMessage({ mime_type: "audio/pcm", data: arrayBufferToBase64(pcmData) });
}

startAudioButton.addEventListener("click", async () => {
  startAudioButton.disabled = true;
  [audioPlayerNode] = await startAudioPlayerWorklet();
  await startAudioRecorderWorklet(audioRecorderHandler);
  isAudio = true;
  websocket.onclose = null;  // switching modes: reconnect now, not in 5 s
  websocket.close();
  connectWebsocket();
});

connectWebsocket();
