// The microphone: getUserMedia with the browser's voice processing on, and a level meter.

/** Why the microphone could not be opened: "denied", "missing" or "failed". */
export class MicrophoneError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

/** Open the microphone with echo cancellation, noise suppression and gain control on. */
export async function openMicrophone() {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new MicrophoneError("failed", "This browser cannot use a microphone on this page " +
      "(it needs https or localhost).");
  }
  try {
    return await navigator.mediaDevices.getUserMedia({
      audio: {
        echoCancellation: true,
        noiseSuppression: true,
        autoGainControl: true,
        channelCount: 1,
      },
    });
  } catch (error) {
    if (error.name === "NotAllowedError" || error.name === "SecurityError") {
      throw new MicrophoneError("denied", "Microphone access was denied. Allow the " +
        "microphone for this site in the browser's settings, or use text only.");
    }
    if (error.name === "NotFoundError" || error.name === "OverconstrainedError") {
      throw new MicrophoneError("missing", "No microphone was found. Connect one, or use " +
        "text only.");
    }
    throw new MicrophoneError("failed", `The microphone could not be opened (${error.name}).`);
  }
}

/** Stop every track of a stream (the browser's recording indicator goes away). */
export function closeMicrophone(stream) {
  stream?.getTracks().forEach((track) => track.stop());
}

/**
 * Measures a stream's loudness (RMS, 0..1, scaled for display) every `intervalMs`.
 * Analysis only: nothing is played through Web Audio.
 */
export class LevelMeter {
  constructor(stream, onLevel, intervalMs = 100) {
    this.context = new AudioContext();
    const source = this.context.createMediaStreamSource(stream);
    const analyser = this.context.createAnalyser();
    analyser.fftSize = 1024;
    source.connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    this.timer = setInterval(() => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const s of samples) sum += s * s;
      const rms = Math.sqrt(sum / samples.length);
      onLevel(Math.min(1, rms * 4));
    }, intervalMs);
  }

  close() {
    clearInterval(this.timer);
    this.context.close();
  }
}
