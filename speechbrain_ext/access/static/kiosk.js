// speechbrain_ext kiosk and admin pages: record from the microphone, encode 16-bit PCM WAV, call the API.
// Plain JavaScript for current browsers: no framework, no CDN, no build step.
"use strict";

const $ = (id) => document.getElementById(id);

// Microphones start with a click or a gain ramp; this much audio at the start is dropped, seconds.
const SETTLE_SECONDS = 0.3;

// Record `seconds` of mono audio from the default microphone (after SETTLE_SECONDS); resolves to a WAV Blob at the
// device's rate (the service resamples to 16 kHz). `tick(secondsLeft)` is called every 100 ms while recording.
async function recordWav(seconds, tick) {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: {channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false},
  });
  const context = new AudioContext();
  const source = context.createMediaStreamSource(stream);
  // ScriptProcessorNode: deprecated but everywhere, and needs no separate worklet module
  const processor = context.createScriptProcessor(4096, 1, 1);
  const chunks = [];
  processor.onaudioprocess = (e) => chunks.push(new Float32Array(e.inputBuffer.getChannelData(0)));
  source.connect(processor);
  processor.connect(context.destination);
  const started = performance.now();
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      const left = seconds + SETTLE_SECONDS - (performance.now() - started) / 1000;
      if (tick) tick(Math.max(0, Math.min(seconds, left)));
      if (left <= 0) { clearInterval(timer); resolve(); }
    }, 100);
  });
  processor.disconnect();
  source.disconnect();
  stream.getTracks().forEach((t) => t.stop());
  const rate = context.sampleRate;
  await context.close();
  const all = new Float32Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const c of chunks) { all.set(c, offset); offset += c.length; }
  return encodeWav(all.subarray(Math.min(all.length, Math.round(SETTLE_SECONDS * rate))), rate);
}

// Float samples in [-1, 1] as a RIFF/WAVE file: 44-byte header, 16-bit little-endian PCM, one channel.
function encodeWav(samples, rate) {
  const view = new DataView(new ArrayBuffer(44 + 2 * samples.length));
  const text = (at, s) => { for (let i = 0; i < s.length; i++) view.setUint8(at + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + 2 * samples.length, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, rate, true); view.setUint32(28, 2 * rate, true); view.setUint16(32, 2, true);
  view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, 2 * samples.length, true);
  for (let i = 0; i < samples.length; i++) {
    const x = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(44 + 2 * i, x < 0 ? x * 0x8000 : x * 0x7fff, true);
  }
  return new Blob([view], {type: "audio/wav"});
}

// Call the API; resolves to {status, body} (body: parsed JSON, or {error: text} when it is not JSON).
async function api(method, path, token, form) {
  const headers = token ? {Authorization: "Bearer " + token} : {};
  const response = await fetch(path, {method, headers, body: form});
  let body;
  try { body = await response.json(); } catch (e) { body = {error: response.statusText}; }
  return {status: response.status, body};
}

// A token from the page's meta tag (--kiosk-token-in-page) or from localStorage under `key`.
function storedToken(key) {
  const meta = document.querySelector('meta[name="' + key + '"]');
  return (meta && meta.content) || localStorage.getItem(key) || "";
}

// The recording length: ?seconds=N in the page address, else `fallback`.
function recordingSeconds(fallback) {
  const value = parseFloat(new URLSearchParams(location.search).get("seconds"));
  return value > 0 ? value : fallback;
}

// Show a token form in `box` until a token is saved under `key`; resolves to the token.
function askToken(box, key) {
  return new Promise((resolve) => {
    const token = storedToken(key);
    if (token) { box.hidden = true; resolve(token); return; }
    box.hidden = false;
    box.querySelector("form").addEventListener("submit", (e) => {
      e.preventDefault();
      const value = box.querySelector("input").value.trim();
      if (!value) return;
      localStorage.setItem(key, value);
      box.hidden = true;
      resolve(value);
    });
  });
}
