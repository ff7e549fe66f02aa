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
3. part 2, the job queue: real Celery workers (`celery -A wsgi.celery worker -Q long`) on the
   embedded SQLite broker and a SQLite database in a temporary instance folder; it times the
   clip from upload to "ready" with one worker, then a batch of shorter items (--items,
   --item-seconds, --item-size) queued at once and processed by 1 and then 2 worker nodes,
   printing items per minute, minutes of video per minute, the workers' CPU seconds per item
   (their ffmpeg included) and this script's own CPU share;
4. removes its temporary folder (unless --keep).
"""

from __future__ import annotations

import argparse
import os
import platform as host_platform
import resource
import shutil
import signal
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
# Part 2: the job queue end to end, with real Celery workers on the embedded SQLite broker
# (what `make run` uses) and a SQLite database in a temporary instance folder.
# ---------------------------------------------------------------------------------------------
class Tool:
    """A migrated tool instance in `folder`, used in this process to add items and read their
    status, and by worker subprocesses to process them."""

    def __init__(self, folder: Path) -> None:
        self.instance = folder / "instance"
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL",
                                 "MEDIA_ROOT")}
        self.env |= {"INSTANCE_PATH": str(self.instance),
                     "DATABASE_URL": f"sqlite:///{self.instance / 'tool.sqlite3'}"}
        os.environ.update(self.env)
        os.environ.pop("REDIS_URL", None)
        os.environ.pop("CELERY_BROKER_URL", None)
        from flask_migrate import upgrade

        from lti_tool import create_app

        self.app = create_app()
        with self.app.app_context():
            upgrade(directory=str(ROOT / "migrations"))

    def add(self, clip: Path, title: str) -> int:
        from lti_tool.extensions import db
        from lti_tool.services import jobs, media, processing

        with self.app.app_context(), open(clip, "rb") as stream:
            item = media.add_media(stream, root=self.app.config["MEDIA_ROOT"],
                                   max_bytes=10**11, title=title)
            job = processing.queue_processing(item)
            db.session.commit()
            jobs.dispatch(job)
            return item.id

    def statuses(self, ids: list[int]) -> list[str]:
        import sqlalchemy as sa

        from lti_tool.extensions import db
        from lti_tool.models import Media

        with self.app.app_context():
            rows = db.session.execute(sa.select(Media.id, Media.status)
                                      .where(Media.id.in_(ids))).all()
            db.session.remove()
        return [status.value for _, status in rows]

    def start_workers(self, count: int) -> list[subprocess.Popen]:
        """`count` worker nodes on the long queue, one process each (as on `count` hosts)."""
        workers = []
        for n in range(count):
            log = open(self.instance.parent / f"worker{n}.log", "w+")
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "wsgi.celery", "worker", "-Q", "long",
                 "-c", "1", "-n", f"bench{n}@%h", "--without-mingle", "--without-gossip"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT))
        for n in range(count):
            log_path = self.instance.parent / f"worker{n}.log"
            deadline = time.monotonic() + 60
            while "ready." not in log_path.read_text() and time.monotonic() < deadline:
                time.sleep(0.2)
        return workers

    @staticmethod
    def stop(workers: list[subprocess.Popen]) -> None:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=120)

    def wait_ready(self, ids: list[int], poll: float = 0.5) -> float:
        """Seconds until every item is ready (or one failed)."""
        started = time.perf_counter()
        while True:
            statuses = self.statuses(ids)
            if "failed" in statuses:
                raise SystemExit(f"an item failed to process: {statuses}")
            if statuses.count("ready") == len(ids):
                return time.perf_counter() - started
            time.sleep(poll)


def queue_benchmark(clip: Path, folder: Path, items: int, item_seconds: int,
                    item_size: str) -> None:
    """Part 2: upload → ready for the clip, then queue throughput with 1 and 2 workers."""
    tool = Tool(folder)
    print("\n== the job queue (Celery, SQLite broker, SQLite database) ==")
    own_before = time.process_time()
    cpu_before = children_cpu()
    workers = tool.start_workers(1)
    added = time.perf_counter()
    item = tool.add(clip, "Bench upload")  # stored, queued and handed to the broker
    tool.wait_ready([item])
    ready = time.perf_counter() - added
    Tool.stop(workers)
    length = transcode.probe(clip).duration
    print(f"upload -> ready, one worker: {ready:.1f} s for {length:.0f} s of video "
          f"({ready / length:.2f}x real time; includes queueing and the poll)")

    batch = make_clip(folder, item_seconds, item_size)
    print(f"\nthroughput: {items} items of {item_seconds} s {item_size}, queued at once")
    print(f"{'workers':>7} {'wall s':>8} {'items/min':>10} {'video min/min':>14} "
          f"{'worker CPU s/item':>18}")
    for count in (1, 2):
        cpu_start = children_cpu()
        workers = tool.start_workers(count)
        started = time.perf_counter()
        ids = [tool.add(batch, f"Batch {count}.{n}") for n in range(items)]
        tool.wait_ready(ids)
        wall = time.perf_counter() - started
        Tool.stop(workers)
        cpu = children_cpu() - cpu_start
        print(f"{count:>7} {wall:>8.1f} {items / wall * 60:>10.2f} "
              f"{items * item_seconds / wall:>14.2f} {cpu / items:>18.1f}")
    own = time.process_time() - own_before
    workers_cpu = children_cpu() - cpu_before
    print(f"\nthis script (adding items, polling): {own:.1f} s CPU, "
          f"{own / (own + workers_cpu):.1%} of all CPU used in part 2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--items", type=int, default=4, help="items in the throughput run")
    parser.add_argument("--item-seconds", type=int, default=20)
    parser.add_argument("--item-size", default="1280x720")
    parser.add_argument("--only", choices=("transcode", "queue"),
                        help="run one part only")
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
        if args.only != "queue":
            transcode_benchmark(clip, folder / "renditions")
        if args.only != "transcode":
            queue_benchmark(clip, folder, args.items, args.item_seconds, args.item_size)
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
