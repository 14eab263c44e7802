// Plays 16-bit PCM from a ring buffer (seed-protocol test client).
class PcmPlayerProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.buffer = new Float32Array(24000 * 180);
    this.writeIndex = 0;
    this.readIndex = 0;
    this.port.onmessage = (event) => {
      const pcm = new Int16Array(event.data);
      for (let i = 0; i < pcm.length; i++) {
        this.buffer[this.writeIndex] = pcm[i] / 32768;
        this.writeIndex = (this.writeIndex + 1) % this.buffer.length;
      }
    };
  }

  process(_inputs, outputs) {
    const output = outputs[0];
    for (let i = 0; i < output[0].length; i++) {
      const sample = this.readIndex === this.writeIndex ? 0 : this.buffer[this.readIndex];
      if (this.readIndex !== this.writeIndex) {
        this.readIndex = (this.readIndex + 1) % this.buffer.length;
      }
      for (const channel of output) channel[i] = sample;
    }
    return true;
  }
}
registerProcessor("pcm-player-processor", PcmPlayerProcessor);
