// Starts the 16 kHz microphone recorder worklet (seed-protocol test client).
export async function startAudioRecorderWorklet(onPcm) {
  const context = new AudioContext({ sampleRate: 16000 });
  await context.audioWorklet.addModule(new URL("./pcm-recorder-processor.js", import.meta.url));
  const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1 } });
  const source = context.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(context, "pcm-recorder-processor");
  source.connect(node);
  node.port.onmessage = (event) => onPcm(convertFloat32ToPCM(event.data));
  await context.resume();
  return [node, context, stream];
}

function convertFloat32ToPCM(samples) {
  const pcm = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) pcm[i] = Math.max(-1, Math.min(1, samples[i])) * 0x7fff;
  return pcm.buffer;
}
