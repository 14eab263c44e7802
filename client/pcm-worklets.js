// AudioWorklet processors for the WebSocket fallback (loaded with audioWorklet.addModule).
// "pcm-capture": microphone -> 16-bit PCM frames at the context's rate (16 kHz).
// "pcm-playback": 16-bit PCM at the context's rate (24 kHz) -> speakers, flushable.

const CAPTURE_FRAME_SAMPLES = 320;  // 20 ms at 16 kHz per message to the main thread
const PLAYBACK_CAPACITY_S = 120;    // the agent's audio may arrive faster than real time
const REPORT_EVERY_BLOCKS = 20;     // ~100 ms of 128-sample blocks at 24 kHz

class PcmCaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.frame = new Int16Array(CAPTURE_FRAME_SAMPLES);
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0]?.[0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      const s = Math.max(-1, Math.min(1, channel[i]));
      this.frame[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      if (this.filled === this.frame.length) {
        this.port.postMessage(this.frame.buffer, [this.frame.buffer]);
        this.frame = new Int16Array(CAPTURE_FRAME_SAMPLES);
        this.filled = 0;
      }
    }
    return true;
  }
}

class PcmPlaybackProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ring = new Float32Array(sampleRate * PLAYBACK_CAPACITY_S);
    this.read = 0;
    this.write = 0;
    this.blocks = 0;
    this.dropped = 0;  // samples dropped when the ring was full (counted, reported)
    this.port.onmessage = (event) => {
      if (event.data === "flush") {
        this.read = this.write;
      } else {
        this.push(new Int16Array(event.data));
      }
    };
  }

  buffered() {
    return (this.write - this.read + this.ring.length) % this.ring.length;
  }

  push(pcm) {
    for (let i = 0; i < pcm.length; i++) {
      if (this.buffered() === this.ring.length - 1) {
        this.dropped += pcm.length - i;
        return;
      }
      this.ring[this.write] = pcm[i] / 32768;
      this.write = (this.write + 1) % this.ring.length;
    }
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    let peak = 0;
    for (let i = 0; i < out.length; i++) {
      if (this.read === this.write) {
        out[i] = 0;
      } else {
        out[i] = this.ring[this.read];
        this.read = (this.read + 1) % this.ring.length;
        peak = Math.max(peak, Math.abs(out[i]));
      }
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    if (++this.blocks % REPORT_EVERY_BLOCKS === 0) {
      this.port.postMessage({ bufferedS: this.buffered() / sampleRate, peak,
                              dropped: this.dropped });
    }
    return true;
  }
}

registerProcessor("pcm-capture", PcmCaptureProcessor);
registerProcessor("pcm-playback", PcmPlaybackProcessor);
