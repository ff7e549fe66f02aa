"""What ffprobe says about an upload: duration, its video and audio streams, a cover picture."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path

from .ffmpeg import (
    FFPROBE,
    NO_STREAMS,
    PROBE_TIMEOUT,
    TOO_LONG,
    UNSUPPORTED,
    ProcessingFailed,
    die_with_parent,
    failure,
)

IMAGE_FORMATS = {"image2", "tty", "gif"}  # plus every "*_pipe" demuxer (png_pipe, jpeg_pipe…)
HDR_TRANSFERS = {"arib-std-b67", "smpte2084"}  # HLG, PQ


@dataclass(frozen=True)
class VideoStream:
    index: int
    codec: str
    profile: str | None
    pix_fmt: str | None
    width: int  # as stored, before rotation
    height: int
    rotation: int  # 0, 90, 180 or 270
    display_width: int  # as shown: rotation and pixel aspect applied
    display_height: int
    frame_rate: Fraction | None  # avg_frame_rate: r_frame_rate is a guess on phone VFR video
    color_transfer: str | None
    color_primaries: str | None
    interlaced: bool

    @property
    def hdr(self) -> bool:
        return self.color_transfer in HDR_TRANSFERS or self.color_primaries == "bt2020"


@dataclass(frozen=True)
class AudioStream:
    index: int
    codec: str
    channels: int | None
    sample_rate: int | None


@dataclass(frozen=True)
class Probe:
    duration: float | None
    size: int | None
    format_name: str
    video: VideoStream | None  # None for audio with cover art: the picture is no video
    audio: AudioStream | None
    cover_index: int | None  # the attached picture's stream, used as an audio file's poster



def probe(path: Path, *, timeout: float = PROBE_TIMEOUT) -> Probe:
    """What ffprobe says about `path`; ProcessingFailed if it holds nothing to play."""
    command = [FFPROBE, "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
               str(path)]
    try:
        result = subprocess.run(command, capture_output=True, timeout=max(timeout, 0.01),
                                stdin=subprocess.DEVNULL,
                                preexec_fn=partial(die_with_parent, os.getpid()))
    except subprocess.TimeoutExpired as error:
        raise ProcessingFailed(TOO_LONG, transient=True) from error
    if result.returncode != 0:
        raise failure(result.returncode, result.stderr.decode("utf-8", "replace"))
    found = _parse_probe(json.loads(result.stdout.decode("utf-8", "replace") or "{}"))
    if found.video is None and found.audio is None:
        raise ProcessingFailed(NO_STREAMS)
    if found.video and not (found.video.width and found.video.height):
        raise ProcessingFailed(UNSUPPORTED)  # ffprobe could not read the codec's parameters
    return found


def _parse_probe(data: dict) -> Probe:
    fmt = data.get("format", {})
    streams = data.get("streams", [])
    format_name = fmt.get("format_name", "")
    if format_name in IMAGE_FORMATS or format_name.endswith("_pipe"):
        streams = []
    cover = next((s for s in streams if _is_cover(s)), None)
    video = next((s for s in streams if s.get("codec_type") == "video" and not _is_cover(s)),
                 None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    chosen = video or audio or {}
    duration = (_number(chosen.get("duration")) or _number(fmt.get("duration"))
                or _clock(chosen.get("tags", {}).get("DURATION")))
    return Probe(duration=duration, size=_integer(fmt.get("size")), format_name=format_name,
                 video=_video(video) if video else None, audio=_audio(audio) if audio else None,
                 cover_index=cover["index"] if cover and not video else None)


def _is_cover(stream: dict) -> bool:
    return stream.get("codec_type") == "video" and bool(
        stream.get("disposition", {}).get("attached_pic"))


def _video(s: dict) -> VideoStream:
    width, height = _integer(s.get("width")) or 0, _integer(s.get("height")) or 0
    rotation = _rotation(s)
    sar = _fraction(s.get("sample_aspect_ratio"))
    display_width = round(width * sar) if sar else width
    display_height = height
    if rotation % 180 == 90:
        display_width, display_height = display_height, display_width
    return VideoStream(
        index=s["index"], codec=s.get("codec_name", "unknown"), profile=s.get("profile"),
        pix_fmt=s.get("pix_fmt"), width=width, height=height, rotation=rotation,
        display_width=display_width, display_height=display_height,
        frame_rate=_fraction(s.get("avg_frame_rate")), color_transfer=s.get("color_transfer"),
        color_primaries=s.get("color_primaries"),
        interlaced=s.get("field_order") in ("tt", "tb", "bt", "bb"))


def _audio(s: dict) -> AudioStream:
    return AudioStream(index=s["index"], codec=s.get("codec_name", "unknown"),
                       channels=_integer(s.get("channels")),
                       sample_rate=_integer(s.get("sample_rate")))


def _rotation(stream: dict) -> int:
    """Degrees from the Display Matrix side data (tags.rotate on files from old tools)."""
    for item in stream.get("side_data_list", []):
        if item.get("side_data_type") == "Display Matrix" and "rotation" in item:
            return round(float(item["rotation"])) % 360
    return round(_number(stream.get("tags", {}).get("rotate")) or 0) % 360


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and number >= 0 else None  # NaN and negatives: unknown


def _integer(value) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def _fraction(value) -> Fraction | None:
    try:
        number = Fraction(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if number > 0 else None


def _clock(value: str | None) -> float | None:
    """Seconds from Matroska's "HH:MM:SS.fffffffff" tag."""
    match = re.fullmatch(r"(\d+):(\d+):(\d+(?:\.\d+)?)", (value or "").strip())
    if not match:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
