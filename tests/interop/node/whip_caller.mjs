// A WHIP client with trickle ICE, on an independent WebRTC stack: werift (pure
// TypeScript) or node-datachannel (libdatachannel, the stack of OBS's WHIP output).
// Both use ECDSA DTLS certificates. Run by tests/interop/test_node_clients.py.
//
//   node whip_caller.mjs --stack werift|datachannel --url http://.../calls
//        --packets opus.json [--seconds 3] [--calls 1]
//
// Each call: offers sendrecv Opus (payload type 111) and a data channel "whip" with
// no candidates in the offer; POSTs it (application/sdp); applies the answer; sends
// every local 127.0.0.1 candidate by PATCH (application/trickle-ice-sdpfrag, RFC
// 8840, with If-Match: the answer's ETag), then `a=end-of-candidates`; once connected, sends the pre-encoded Opus
// packets of --packets (20 ms each, looped) as RTP for --seconds; keeps the Opus
// payloads it receives (base64) and the data-channel messages; DELETEs the call.
// Test traffic stays on loopback: only 127.0.0.1 candidates are sent and used.
//
// Prints one JSON line: {"calls": [{...per call...}]}. Exits 0 whenever it could
// report; the test decides what passes.

import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

const { values: args } = parseArgs({
  options: {
    stack: { type: "string" },
    url: { type: "string" },
    packets: { type: "string" },
    seconds: { type: "string", default: "3" },
    calls: { type: "string", default: "1" },
    "limit-s": { type: "string", default: "15" },
    // A slow caller: candidates in the offer (no trickle), the answer applied late.
    "candidates-in-offer": { type: "boolean", default: false },
    "answer-delay-ms": { type: "string", default: "0" },
  },
});
const PAYLOAD_TYPE = 111;
const PTIME_MS = 20;
const SAMPLES_PER_PACKET = 960; // 20 ms at Opus's 48 kHz RTP clock
const LOOPBACK = "127.0.0.1";
const opusPackets = JSON.parse(readFileSync(args.packets, "utf8")).payloads.map((p) =>
  Buffer.from(p, "base64"),
);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function rtpPacket(seq, timestamp, ssrc, payload) {
  const header = Buffer.alloc(12);
  header[0] = 0x80;
  header[1] = PAYLOAD_TYPE;
  header.writeUInt16BE(seq & 0xffff, 2);
  header.writeUInt32BE(timestamp >>> 0, 4);
  header.writeUInt32BE(ssrc >>> 0, 8);
  return Buffer.concat([header, payload]);
}

function opusPayload(rtp) {
  // RTP only (RTCP shares the track in libdatachannel: its second byte is 200-206).
  if (rtp.length < 12 || rtp[0] >> 6 !== 2 || (rtp[1] & 0x7f) !== PAYLOAD_TYPE) return null;
  const csrcCount = rtp[0] & 0x0f;
  let offset = 12 + 4 * csrcCount;
  if (rtp[0] & 0x10) offset += 4 + 4 * rtp.readUInt16BE(offset + 2);
  let end = rtp.length;
  if (rtp[0] & 0x20) end -= rtp[rtp.length - 1];
  return rtp.subarray(offset, end);
}

function withoutCandidates(sdp) {
  return sdp
    .split(/\r?\n/)
    .filter((line) => line && !line.startsWith("a=candidate:") && line !== "a=end-of-candidates")
    .join("\r\n")
    .concat("\r\n");
}

function withCandidates(sdp, lines) {
  // After each m-section's a=mid (BUNDLE: the same candidates serve every section).
  return sdp.replace(/^(a=mid:.*)$/gm, (mid) => [mid, ...lines].join("\r\n"));
}

function sdpValue(sdp, name) {
  const match = sdp.match(new RegExp(`^a=${name}:(.*)$`, "m"));
  return match ? match[1].trim() : null;
}

function isLoopbackCandidate(line) {
  const fields = line.replace(/^a=/, "").split(" ");
  return fields.length > 5 && fields[2].toLowerCase() === "udp" && fields[4] === LOOPBACK;
}

// ---- one call, whatever the stack ---------------------------------------------------

class Call {
  constructor(peer) {
    this.peer = peer; // {offer(), applyAnswer(sdp), send(buf), close()} + callbacks below
    this.report = {
      stack: args.stack,
      http_status: null,
      patch_statuses: [],
      answer_setup: null,
      states: [],
      connected_after_s: null,
      messages: [],
      received: [],
      sent_packets: 0,
      errors: [],
    };
    this.location = null;
    this.etag = null;
    this.pending = [];
    this.ended = false;
    this.started = performance.now();
    this.connected = new Promise((resolve) => (this.onConnected = resolve));
    this.failed = new Promise((resolve) => (this.onFailed = resolve));
    this.gathered = new Promise((resolve) => (this.onGathered = resolve));
  }

  state(state) {
    this.report.states.push(state);
    if (state === "connected" && this.report.connected_after_s === null) {
      this.report.connected_after_s = (performance.now() - this.started) / 1000;
      this.onConnected();
    }
    if (state === "failed" || state === "closed") this.onFailed();
  }

  candidate(line) {
    if (line === null) {
      this.pending.push("a=end-of-candidates");
      this.onGathered();
    } else if (isLoopbackCandidate(line)) {
      this.pending.push(line.startsWith("a=") ? line : `a=${line}`);
    }
    this.flushCandidates();
  }

  async flushCandidates() {
    if (!this.location || !this.pending.length || this.ended) return;
    const lines = this.pending.splice(0);
    const fragment = [
      `a=ice-ufrag:${this.ufrag}`,
      `a=ice-pwd:${this.pwd}`,
      `m=audio 9 UDP/TLS/RTP/SAVPF ${PAYLOAD_TYPE}`,
      `a=mid:${this.mid}`,
      ...lines,
    ].join("\r\n");
    try {
      const response = await fetch(new URL(this.location, args.url), {
        method: "PATCH",
        // RFC 9725 §4.3.2: a trickle PATCH names the ICE session it is for.
        headers: { "Content-Type": "application/trickle-ice-sdpfrag", "If-Match": this.etag },
        body: fragment + "\r\n",
      });
      this.report.patch_statuses.push(response.status);
    } catch (error) {
      this.report.errors.push(`PATCH failed: ${error}`);
    }
  }

  async run() {
    let offer = withoutCandidates(await this.peer.offer());
    if (args["candidates-in-offer"]) {
      await this.gathered;
      offer = withCandidates(offer, this.pending.splice(0));
    }
    this.ufrag = sdpValue(offer, "ice-ufrag");
    this.pwd = sdpValue(offer, "ice-pwd");
    this.mid = sdpValue(offer, "mid");
    const response = await fetch(args.url, {
      method: "POST",
      headers: { "Content-Type": "application/sdp" },
      body: offer,
    });
    this.report.http_status = response.status;
    const answer = await response.text();
    if (response.status !== 201) {
      this.report.errors.push(answer.slice(0, 300));
      return;
    }
    this.location = response.headers.get("location");
    this.etag = response.headers.get("etag");
    this.report.answer_setup = sdpValue(answer, "setup");
    await sleep(Number(args["answer-delay-ms"]));
    if (process.env.WHIP_DEBUG) process.stderr.write(`${offer}\n----\n${answer}\n`);
    await this.peer.applyAnswer(answer);
    this.flushCandidates();
    const limit = sleep(Number(args["limit-s"]) * 1000).then(() => "timeout");
    const outcome = await Promise.race([
      this.connected.then(() => "connected"),
      this.failed.then(() => "failed"),
      limit,
    ]);
    if (outcome === "connected") await this.talk();
    else this.report.errors.push(`not connected: ${outcome}`);
  }

  async talk() {
    const ssrc = Math.floor(Math.random() * 0xffffffff);
    let seq = Math.floor(Math.random() * 0xffff);
    let timestamp = Math.floor(Math.random() * 0xffffffff);
    const packets = Math.round((Number(args.seconds) * 1000) / PTIME_MS);
    const start = performance.now();
    for (let i = 0; i < packets && !this.ended; i++) {
      const payload = opusPackets[i % opusPackets.length];
      this.peer.send(rtpPacket(seq++, timestamp, ssrc, payload));
      timestamp += SAMPLES_PER_PACKET;
      this.report.sent_packets++;
      const due = start + (i + 1) * PTIME_MS;
      await sleep(Math.max(0, due - performance.now()));
    }
  }

  received(rtp) {
    const payload = opusPayload(rtp);
    if (payload) this.report.received.push(payload.toString("base64"));
  }

  async hangUp() {
    this.ended = true;
    if (this.location) {
      try {
        const response = await fetch(new URL(this.location, args.url), { method: "DELETE" });
        this.report.delete_status = response.status;
      } catch (error) {
        this.report.errors.push(`DELETE failed: ${error}`);
      }
    }
    await this.peer.close();
  }
}

// ---- werift --------------------------------------------------------------------------

async function weriftPeer(call) {
  const { RTCPeerConnection, MediaStreamTrack, RTCRtpCodecParameters } = await import("werift");
  const pc = new RTCPeerConnection({
    iceServers: [],
    iceUseIpv6: false,
    iceAdditionalHostAddresses: [LOOPBACK],
    // werift also gathers every other interface: check only loopback pairs.
    iceFilterCandidatePair: (pair) =>
      pair.localCandidate.host === LOOPBACK && pair.remoteCandidate.host === LOOPBACK,
    codecs: {
      audio: [
        new RTCRtpCodecParameters({
          mimeType: "audio/opus",
          clockRate: 48000,
          channels: 2,
          payloadType: PAYLOAD_TYPE,
        }),
      ],
    },
  });
  const track = new MediaStreamTrack({ kind: "audio" });
  const transceiver = pc.addTransceiver(track, { direction: "sendrecv" });
  transceiver.onTrack.subscribe((remote) =>
    remote.onReceiveRtp.subscribe((rtp) => call.received(rtp.serialize())),
  );
  const channel = pc.createDataChannel("whip");
  channel.onMessage.subscribe((data) => call.report.messages.push(data.toString()));
  pc.connectionStateChange.subscribe((state) => call.state(state));
  pc.onIceCandidate.subscribe((candidate) => call.candidate(candidate ? candidate.candidate : null));
  return {
    async offer() {
      await pc.setLocalDescription(await pc.createOffer());
      return pc.localDescription.sdp;
    },
    async applyAnswer(sdp) {
      await pc.setRemoteDescription({ type: "answer", sdp });
    },
    send(rtp) {
      track.writeRtp(rtp);
    },
    async close() {
      await pc.close();
    },
  };
}

// ---- node-datachannel (libdatachannel) ----------------------------------------------

async function datachannelPeer(call) {
  const { default: ndc } = await import("node-datachannel");
  if (process.env.WHIP_DEBUG) ndc.initLogger("Debug", (level, message) => process.stderr.write(`${level} ${message}\n`));
  const pc = new ndc.PeerConnection("whip-caller", {
    iceServers: [],
    bindAddress: LOOPBACK,
    disableAutoNegotiation: true,
  });
  const audio = new ndc.Audio("0", "SendRecv");
  audio.addOpusCodec(PAYLOAD_TYPE);
  audio.addSSRC(Math.floor(Math.random() * 0x7fffffff), "caller", "caller-stream", "caller-audio");
  const track = pc.addTrack(audio);
  track.onMessage((rtp) => call.received(Buffer.from(rtp)));
  const channel = pc.createDataChannel("whip");
  channel.onMessage((data) => call.report.messages.push(data.toString()));
  channel.onOpen(() => call.report.states.push("channel-open"));
  channel.onError((error) => call.report.errors.push(`data channel: ${error}`));
  pc.onStateChange((state) => call.state(state));
  pc.onLocalCandidate((candidate) => call.candidate(candidate));
  pc.onGatheringStateChange((state) => {
    if (state === "complete") call.candidate(null);
  });
  const described = new Promise((resolve) => pc.onLocalDescription((sdp) => resolve(sdp)));
  return {
    // node-datachannel closes a channel or track whose JS object is collected: hold both.
    held: [channel, track, audio],
    async offer() {
      pc.setLocalDescription("offer");
      return described;
    },
    async applyAnswer(sdp) {
      pc.setRemoteDescription(sdp, "answer");
    },
    send(rtp) {
      if (track.isOpen()) track.sendMessageBinary(rtp);
    },
    async close() {
      pc.close();
    },
  };
}

// ---- main ----------------------------------------------------------------------------

const makePeer = { werift: weriftPeer, datachannel: datachannelPeer }[args.stack];
if (!makePeer) throw new Error(`unknown --stack ${args.stack}`);
const reports = [];
for (let i = 0; i < Number(args.calls); i++) {
  const call = new Call(null);
  call.peer = await makePeer(call);
  try {
    await call.run();
    await sleep(200); // the last packets and messages
  } catch (error) {
    call.report.errors.push(String(error && error.stack ? error.stack : error));
  } finally {
    await call.hangUp();
  }
  reports.push(call.report);
}
process.stdout.write(JSON.stringify({ calls: reports }) + "\n");
if (args.stack === "datachannel") (await import("node-datachannel")).default.cleanup();
process.exit(0);
