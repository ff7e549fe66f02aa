"""The ffmpeg pipeline: probe an upload, make web-playable renditions, all or nothing."""

from __future__ import annotations

import errno
import glob
import logging
import resource
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from .ffmpeg import (
    DAMAGE_MARKERS,
    DAMAGED,
    FAILED,
    NO_SPACE,
    PROBE_TIMEOUT,
    TOO_LONG,
    ProcessingFailed,
    has_filter,
    run_ffmpeg,
)
from .probe import HDR_TRANSFERS, Probe, probe

log = logging.getLogger(__name__)

PRESET = "veryfast"  # 2 vCPUs: 1080p30 MP4 at 0.84x real time; faster/medium 1.4x/2x slower
CRF = 23
AUDIO = ["-c:a", "aac", "-b:a", "128k", "-ac", "2"]
MAX_FPS = 60  # Apple's HLS spec; also caps phones' 120/240 fps slow-motion
KEYFRAME_SECONDS = 2  # every rung has a keyframe on the same 2 s grid: switchable segments
HLS_SEGMENT_SECONDS = 4
# (short edge, peak video bit rate): the HLS ladder; the MP4 uses the rate of its own size.
RUNGS = ((360, 800_000), (720, 2_800_000), (1080, 5_000_000))
PLAYBACK_MAX = RUNGS[-1][0]  # the MP4 is capped at 1080p (long edge 1920)
POSTER_AT = 1.0  # seconds in, to skip a black first frame; at most half the duration
PREVIEW_SIZE = 320  # pixels: fits in this square, as media.PREVIEW_WIDTH
TONE_MAP = ("zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,"
            "tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv")
BT709 = ["-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709"]


@dataclass
class Renditions:
    """What `process` made; paths are relative to its output folder."""

    kind: str  # "video" | "audio"
    playback: str
    hls: str | None
    poster: str | None
    preview: str | None
    duration: float | None
    width: int | None  # of the playback file, rotation applied
    height: int | None
    probe: Probe


@dataclass
class _Step:
    name: str
    weight: float  # a guess at its share of the work, for one overall percent
    run: Callable[[Callable[[float], None]], None]


def process(source: Path, out_dir: Path, progress: Callable[[int], None] | None = None, *,
            time_limit: float | None = None,
            timings: dict[str, tuple[float, float]] | None = None) -> Renditions:
    """Make `out_dir` hold web-playable renditions of `source`, or leave it untouched.

    Everything is written to a hidden sibling folder renamed to `out_dir` once complete, so a
    killed run never leaves half a rendition behind (its leftovers are removed by the next run
    for the same `out_dir`: one run per `out_dir` at a time). `progress` gets one overall percent
    whenever it changes; an exception it raises stops ffmpeg and is re-raised. `time_limit`
    (seconds) stops the run with a transient ProcessingFailed. `timings`, if given, receives each
    step's wall time and its ffmpeg's CPU time, in seconds (for bench/transcode_bench.py).
    """
    source, out_dir = Path(source), Path(out_dir)
    deadline = time.monotonic() + time_limit if time_limit else None
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out_dir)
    work = out_dir.parent / f".{out_dir.name}.part-{uuid.uuid4().hex}"
    try:
        started = _clocks()
        found = probe(source, timeout=_remaining(deadline, PROBE_TIMEOUT))
        if timings is not None:
            timings["probe"] = _since(started)
        work.mkdir()
        steps, result = (_video_plan if found.video else _audio_plan)(source, work, found,
                                                                     deadline)
        _run_steps(steps, progress, timings)
        result = _measured(work, result, deadline)
        if progress:
            progress(100)
        _replace(work, out_dir)
        return result
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise ProcessingFailed(NO_SPACE, transient=True) from error
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _video_plan(source: Path, work: Path, found: Probe, deadline: float | None):
    video = found.video
    playback = _fit(video.display_width, video.display_height, PLAYBACK_MAX)
    mp4 = work / "video.mp4"
    steps = [_Step("video.mp4", 1.0, partial(
        _encode, _mp4_args(source, mp4, found, playback), found.duration, deadline=deadline))]
    sizes = {_fit(video.display_width, video.display_height, edge) for edge, _ in RUNGS}
    rungs = sorted((size for size in sizes if _area(size) <= _area(playback)), key=_area)
    for size in rungs:
        copy = size == playback
        # Measured with bench/transcode_bench.py: a rung's encode costs about 0.2 of the MP4's
        # (decoding it) plus its share of the pixels; a copy or the pictures, next to nothing.
        weight = 0.02 if copy else 0.2 + 0.9 * _area(size) / _area(playback)
        steps.append(_Step(f"hls/{min(size)}p" + (" (copy)" if copy else ""), weight, partial(
            _hls_rung, mp4, work / "hls" / f"{min(size)}p", None if copy else size,
            found.duration, deadline=deadline)))
    steps.append(_Step("hls/master.m3u8", 0.0,
                       lambda report: _write_master(work / "hls", rungs)))
    seek = min(POSTER_AT, (found.duration or 0) / 2)
    steps.append(_Step("poster", 0.05, partial(_pictures, mp4, "0:v:0", seek, work,
                                               deadline=deadline)))
    result = Renditions(kind="video", playback="video.mp4", hls="hls/master.m3u8",
                        poster="poster.jpg", preview="preview.jpg", duration=None,
                        width=None, height=None, probe=found)
    return steps, result


def _audio_plan(source: Path, work: Path, found: Probe, deadline: float | None):
    args = ["-i", str(source), "-map", f"0:{found.audio.index}", "-vn", "-sn", "-dn",
            "-map_metadata", "-1", "-map_chapters", "-1", *AUDIO, "-movflags", "+faststart",
            str(work / "audio.m4a")]
    steps = [_Step("audio.m4a", 1.0, partial(_encode, args, found.duration,
                                             deadline=deadline))]
    cover = found.cover_index is not None
    if cover:
        steps.append(_Step("poster", 0.02, partial(
            _pictures, source, f"0:{found.cover_index}", 0, work, deadline=deadline)))
    result = Renditions(kind="audio", playback="audio.m4a", hls=None,
                        poster="poster.jpg" if cover else None,
                        preview="preview.jpg" if cover else None, duration=None, width=None,
                        height=None, probe=found)
    return steps, result


def _encode(args: list[str], duration: float | None, report: Callable[[float], None], *,
            deadline: float | None) -> None:
    """The playback file. ffmpeg reads a truncated MP4 or WebM to where it stops and exits 0:
    a much shorter output with the demuxer's complaint in the log means a damaged upload."""
    out_seconds, stderr = run_ffmpeg(args, duration, report, deadline)
    if duration and out_seconds < 0.9 * duration:
        if any(marker in stderr for marker in DAMAGE_MARKERS):
            raise ProcessingFailed(DAMAGED)


def _run_steps(steps: list[_Step], progress: Callable[[int], None] | None,
               timings: dict[str, tuple[float, float]] | None) -> None:
    """Run each step, turning each one's 0..1 fraction into one overall percent."""
    total = sum(step.weight for step in steps) or 1.0
    done = 0.0
    last = -1

    def report(fraction: float) -> None:
        nonlocal last
        percent = min(99, int(100 * (done + step.weight * fraction) / total))
        if progress and percent != last:
            last = percent
            progress(percent)

    for step in steps:
        report(0)
        started = _clocks()
        step.run(report)
        if timings is not None:
            timings[step.name] = _since(started)
        done += step.weight


def _clocks() -> tuple[float, float]:
    """Wall time and the CPU time of finished children (ffmpeg runs are waited for)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.monotonic(), children.ru_utime + children.ru_stime


def _since(started: tuple[float, float]) -> tuple[float, float]:
    now = _clocks()
    return now[0] - started[0], now[1] - started[1]


def _fit(width: int, height: int, short_edge: int) -> tuple[int, int]:
    """The even size that fits a `short_edge`p box turned like the picture, never enlarged."""
    long_edge = short_edge * 16 // 9
    box = (long_edge, short_edge) if width >= height else (short_edge, long_edge)
    scale = min(1.0, box[0] / width, box[1] / height)
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def _area(size: tuple[int, int]) -> int:
    return size[0] * size[1]


def _max_rate(size: tuple[int, int]) -> int:
    return next((rate for edge, rate in RUNGS if min(size) <= edge), RUNGS[-1][1])


def _x264(size: tuple[int, int]) -> list[str]:
    """H.264 High, CRF capped by a peak rate (so HLS BANDWIDTH counts video), keyframes on the
    same grid in every rung (no scene-cut keyframes) so their segments line up."""
    rate = _max_rate(size)
    return ["-c:v", "libx264", "-preset", PRESET, "-crf", str(CRF), "-profile:v", "high",
            "-maxrate", str(rate), "-bufsize", str(2 * rate), "-sc_threshold", "0",
            "-force_key_frames", f"expr:gte(t,n_forced*{KEYFRAME_SECONDS})"]


def _mp4_args(source: Path, out: Path, found: Probe, size: tuple[int, int]) -> list[str]:
    video = found.video
    filters = ["bwdif"] if video.interlaced else []
    filters.append(f"scale={size[0]}:{size[1]}")  # before tone mapping: fewer pixels to map
    colours = []
    if video.hdr and video.color_transfer in HDR_TRANSFERS and has_filter("zscale"):
        filters.append(TONE_MAP)
        colours = BT709
    filters += ["setsar=1", "format=yuv420p"]  # 8-bit 4:2:0: 10-bit would make High 10
    rate = video.frame_rate
    timing = (["-fps_mode", "cfr", "-r", str(min(rate, MAX_FPS))] if rate
              else ["-fps_mode", "vfr"])
    audio = ["-map", f"0:{found.audio.index}", *AUDIO] if found.audio else []
    return ["-i", str(source), "-map", f"0:{video.index}", *audio, "-sn", "-dn",
            "-map_metadata", "-1", "-map_chapters", "-1", "-vf", ",".join(filters), *timing,
            *_x264(size), *colours, "-movflags", "+faststart", str(out)]


def _hls_rung(mp4: Path, rung: Path, size: tuple[int, int] | None, duration: float | None,
              report: Callable[[float], None], *, deadline: float | None) -> None:
    """One rung from the finished MP4: copied when it is the MP4's size (`size` None), else
    scaled down; decoding the MP4 is cheaper than the source and it is already tone-mapped."""
    rung.mkdir(parents=True)
    video = ["-c:v", "copy"]
    if size:
        video = ["-vf", f"scale={size[0]}:{size[1]}", *_x264(size)]
    run_ffmpeg([
        "-i", str(mp4), "-map", "0:v:0", "-map", "0:a:0?", *video, "-c:a", "copy",
        "-f", "hls", "-hls_time", str(HLS_SEGMENT_SECONDS), "-hls_playlist_type", "vod",
        "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
        "-hls_flags", "independent_segments",
        "-hls_segment_filename", str(rung / "seg_%03d.m4s"), str(rung / "index.m3u8"),
    ], duration, report, deadline)


def _write_master(hls: Path, sizes: list[tuple[int, int]]) -> None:
    """The master playlist, BANDWIDTH being each rung's measured peak segment bit rate."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for width, height in sizes:
        rung = hls / f"{min(width, height)}p"
        peak, average = _bit_rates(rung / "index.m3u8")
        codecs = _codecs((rung / "init.mp4").read_bytes())
        lines += [f"#EXT-X-STREAM-INF:BANDWIDTH={peak},AVERAGE-BANDWIDTH={average},"
                  f'RESOLUTION={width}x{height},CODECS="{codecs}"', f"{rung.name}/index.m3u8"]
    (hls / "master.m3u8").write_text("\n".join(lines) + "\n")


def _bit_rates(playlist: Path) -> tuple[int, int]:
    """Peak and average bits per second over the playlist's segments (RFC 8216 BANDWIDTH)."""
    peak = total_bits = total_seconds = 0
    seconds = None
    for line in playlist.read_text().splitlines():
        if line.startswith("#EXTINF:"):
            seconds = float(line[8:].split(",")[0])
        elif line and not line.startswith("#") and seconds:
            bits = (playlist.parent / line).stat().st_size * 8
            peak = max(peak, bits / seconds)
            total_bits, total_seconds = total_bits + bits, total_seconds + seconds
            seconds = None
    return round(peak), round(total_bits / total_seconds) if total_seconds else 0


def _codecs(init: bytes) -> str:
    """RFC 6381 codecs: avc1.PPCCLL from the avcC box, plus AAC-LC when there is sound."""
    at = init.find(b"avcC") + 4
    codecs = "avc1." + init[at + 1:at + 4].hex()
    return codecs + (",mp4a.40.2" if b"mp4a" in init else "")


def _pictures(source: Path, stream: str, seek: float, work: Path,
              report: Callable[[float], None], *, deadline: float | None) -> None:
    """poster.jpg at full size and preview.jpg in a PREVIEW_SIZE square, from one frame.

    A seek past the end makes ffmpeg exit 0 and write nothing: then the first frame it is.
    (Any -ss, even 0, loses an audio file's cover picture.)
    """
    small = (f"scale=w='min({PREVIEW_SIZE},iw)':h='min({PREVIEW_SIZE},ih)'"
             ":force_original_aspect_ratio=decrease")
    for at in dict.fromkeys((seek, 0)):
        run_ffmpeg([*(["-ss", f"{at:.3f}"] if at else []), "-i", str(source), "-filter_complex",
                     f"[{stream}]split=2[poster][small];[small]{small}[preview]",
                     "-map", "[poster]", "-frames:v", "1", "-q:v", "3", str(work / "poster.jpg"),
                     "-map", "[preview]", "-frames:v", "1", "-q:v", "4",
                     str(work / "preview.jpg")], None, report, deadline)
        if (work / "poster.jpg").exists() and (work / "preview.jpg").exists():
            return
    raise ProcessingFailed(FAILED)


def _measured(work: Path, result: Renditions, deadline: float | None) -> Renditions:
    """Duration and size of the playback file as made; every promised file must exist."""
    for name in (result.playback, result.hls, result.poster, result.preview):
        if name and not (work / name).is_file():
            log.warning("transcode: %s missing after a successful run", name)
            raise ProcessingFailed(FAILED)
    made = probe(work / result.playback, timeout=_remaining(deadline, PROBE_TIMEOUT))
    result.duration = made.duration
    if made.video:
        result.width, result.height = made.video.display_width, made.video.display_height
    return result


def _replace(work: Path, out_dir: Path) -> None:
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.part-old-{uuid.uuid4().hex}"
        out_dir.rename(old)
        work.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        work.rename(out_dir)


def _remove_leftovers(out_dir: Path) -> None:
    """Temp folders of an earlier run for this output that was killed before cleaning up."""
    for leftover in out_dir.parent.glob(f".{glob.escape(out_dir.name)}.part-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _remaining(deadline: float | None, cap: float) -> float:
    if deadline is None:
        return cap
    left = deadline - time.monotonic()
    if left <= 0:
        raise ProcessingFailed(TOO_LONG, transient=True)
    return min(cap, left)
