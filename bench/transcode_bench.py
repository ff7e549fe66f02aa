"""Transcode benchmark: how fast this machine turns a 60-second 1080p upload into renditions.

    .venv/bin/python bench/transcode_bench.py [--seconds 60] [--size 1920x1080] [--keep]

Run by hand, not a test. The run:
1. generates the source clip with ffmpeg's test sources (testsrc2 picture at 30 fps + a sine
   tone, H.264 High/AAC in an MP4 with its index at the end, as a camera writes it): nothing is
   downloaded. Making it is not timed;
2. runs `transcode.process()` on it once and prints, per step (probe, the MP4, each HLS rung,
   the master playlist, poster and preview): wall time, real-time factor (wall time / clip
   length: below 1 is faster than real time) and the CPU time of its ffmpeg, then the whole
   run's wall time and the CPU time of every child (resource.getrusage(RUSAGE_CHILDREN)), and
   the size of each output;
3. part 2, the job queue (upload → "ready" and throughput with 1 and 2 workers): see
   `queue_benchmark` below;
4. removes its temporary folder (unless --keep).
"""

from __future__ import annotations

import argparse
import os
import platform as host_platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lti_tool.services import transcode  # noqa: E402


def make_clip(folder: Path, seconds: int, size: str) -> Path:
    """A camera-like source: H.264 1080p30 + AAC stereo, moov at the end."""
    clip = folder / f"source_{size}_{seconds}s.mp4"
    subprocess.run([
        "ffmpeg", "-nostdin", "-v", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=s={size}:r=30:d={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:d={seconds}",
        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "192k", "-ac", "2", "-shortest", str(clip),
    ], check=True)
    return clip


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def transcode_benchmark(clip: Path, out_dir: Path) -> transcode.Renditions:
    """Part 1: one `process()` run, timed per step."""
    timings: dict[str, tuple[float, float]] = {}
    cpu_before, started = children_cpu(), time.perf_counter()
    result = transcode.process(clip, out_dir, timings=timings)
    wall, cpu = time.perf_counter() - started, children_cpu() - cpu_before
    length = result.probe.duration or 1.0
    print(f"{'step':<22} {'wall s':>8} {'RTF':>7} {'ffmpeg CPU s':>13}")
    for step, (step_wall, step_cpu) in timings.items():
        print(f"{step:<22} {step_wall:>8.2f} {step_wall / length:>7.3f} {step_cpu:>13.2f}")
    print(f"{'total':<22} {wall:>8.2f} {wall / length:>7.3f} {cpu:>13.2f}")
    print(f"CPU time of all children / wall time: {cpu / wall:.2f} of {os.cpu_count()} cores")
    print(f"\nplayback {result.playback} {result.width}x{result.height}, "
          f"{result.duration:.2f} s; outputs:")
    for path in sorted(out_dir.rglob("*")):
        if path.is_file() and not path.name.startswith("seg_"):
            print(f"  {path.relative_to(out_dir)!s:<28} {path.stat().st_size / 1e6:>8.2f} MB")
    for rung in sorted((out_dir / "hls").iterdir()):
        if rung.is_dir():
            segments = list(rung.glob("seg_*.m4s"))
            size = sum(s.stat().st_size for s in segments) / 1e6
            print(f"  hls/{rung.name}: {len(segments)} segments, {size:.2f} MB")
    print((out_dir / "hls" / "master.m3u8").read_text())
    return result


# ---------------------------------------------------------------------------------------------
# PART 2, to be added by the lead: the job queue end to end.
# - time from upload to "ready": add the clip as a Media item, queue_processing(), run a worker,
#   poll progress_report() until ready;
# - queue throughput: N items queued, processed by 1 and then 2 workers (items per minute).
# ---------------------------------------------------------------------------------------------
def queue_benchmark(clip: Path, folder: Path) -> None:
    """Part 2 (upload → ready, throughput with 1 and 2 workers): not written yet."""
    print("part 2 (upload → ready, queue throughput with 1 and 2 workers): not written yet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="transcode_bench_"))
    try:
        version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True)
        print(version.stdout.splitlines()[0])
        print(f"{host_platform.platform()}, {os.cpu_count()} CPUs, preset {transcode.PRESET}, "
              f"CRF {transcode.CRF}")
        started = time.perf_counter()
        clip = make_clip(folder, args.seconds, args.size)
        print(f"source: {args.size} 30 fps, {args.seconds} s, "
              f"{clip.stat().st_size / 1e6:.1f} MB (made in {time.perf_counter() - started:.1f} s)"
              "\n")
        transcode_benchmark(clip, folder / "renditions")
        queue_benchmark(clip, folder)
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
