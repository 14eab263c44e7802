// Starts the 24 kHz PCM player worklet (seed-protocol test client).
export async function startAudioPlayerWorklet() {
  const context = new AudioContext({ sampleRate: 24000 });
  await context.audioWorklet.addModule(new URL("./pcm-player-processor.js", import.meta.url));
  const node = new AudioWorkletNode(context, "pcm-player-processor");
  node.connect(context.destination);
  await context.resume();
  return [node, context];
}
