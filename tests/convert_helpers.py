"""Tiny source videos for the convert tests, written with PyAV (a tone track, rotation, VFR)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

TONE_HZ = 440.0
AUDIO_RATE = 44100


def scene(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """uint8 (t, h, w, 3): a textured background panning right plus a bright square (smooth enough
    for H.264 to keep it faithfully)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(40, 215, size=(h // 4 + 2, w // 4 + 2 + t, 3))
    big = np.kron(base, np.ones((4, 4, 1)))
    frames = np.stack([big[:h, k:k + w] for k in range(t)])
    frames[:, h // 3:2 * h // 3, w // 3:w // 3 + w // 5] = 250
    return frames.astype(np.uint8)


def tone(seconds: float, rate: int = AUDIO_RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * TONE_HZ * t) * np.minimum(1.0, 4 * t)).astype(np.float32)


def make_video(path: Path, frames: np.ndarray, fps: float = 24, audio: str | None = None, rotation: int = 0,
               pts: list[int] | None = None, time_base: Fraction | None = None) -> Path:
    """Write uint8 (T, H, W, 3) frames as H.264; ``audio``: None, "aac" (MP4) or "pcm_s16le" (MKV);
    ``rotation``: display-matrix degrees (counter-clockwise); ``pts``: explicit frame times in
    ``time_base`` units (variable frame rate)."""
    import av

    fmt = "matroska" if path.suffix == ".mkv" else "mp4"
    container = av.open(str(path), "w", format=fmt)
    video = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
    video.height, video.width = frames.shape[1:3]
    video.pix_fmt = "yuv420p"
    video.options = {"crf": "10", "preset": "ultrafast"}
    if time_base is not None:
        video.time_base = time_base
        video.codec_context.time_base = time_base
    if rotation:
        video.set_display_rotation(rotation)
    stream_a = container.add_stream(audio, rate=AUDIO_RATE, layout="mono") if audio else None
    for k, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        if pts is not None:
            frame.pts = pts[k]
            frame.time_base = time_base
        for packet in video.encode(frame):
            container.mux(packet)
    for packet in video.encode():
        container.mux(packet)
    if stream_a is not None:
        signal = tone(len(frames) / fps)
        size = stream_a.codec_context.frame_size or 1024
        for start in range(0, len(signal), size):
            chunk = signal[start:start + size]
            if stream_a.codec_context.format.name == "s16":
                af = av.AudioFrame.from_ndarray((chunk * 32767).astype(np.int16)[None], format="s16", layout="mono")
            else:
                af = av.AudioFrame.from_ndarray(chunk[None], format="fltp", layout="mono")
            af.sample_rate = AUDIO_RATE
            af.pts = start
            for packet in stream_a.encode(af):
                container.mux(packet)
        for packet in stream_a.encode():
            container.mux(packet)
    container.close()
    return path


def decode_audio(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the rate of the first audio stream."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
        chunks = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        return np.concatenate(chunks), AUDIO_RATE


def stream_info(path: Path) -> dict:
    import av

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        info = {"codec": video.codec_context.name, "pix_fmt": video.codec_context.pix_fmt,
                "fps": video.average_rate, "width": video.codec_context.width, "height": video.codec_context.height,
                "audio": container.streams.audio[0].codec_context.name if container.streams.audio else None}
        if container.streams.audio:
            a = container.streams.audio[0]
            info["audio_s"] = float(a.duration * a.time_base) if a.duration else None
        info["video_s"] = float(video.duration * video.time_base) if video.duration else None
        return info
