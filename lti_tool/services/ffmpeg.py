"""Running ffmpeg: a killable child with progress, a time limit, reasons a teacher reads."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial

log = logging.getLogger(__name__)

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"
PROBE_TIMEOUT = 60  # seconds: ffprobe reads headers only, a hang means a hostile file
PR_SET_PDEATHSIG = 1

NO_STREAMS = "This file has no video or audio stream."
DAMAGED = "This file is damaged or incomplete: upload it again."
UNSUPPORTED = "This file uses a codec the tool cannot convert."
NO_SPACE = "The server ran out of disk space while converting this file."
INTERRUPTED = "Converting this file was interrupted."
TOO_LONG = "Converting this file took too long and was stopped."
FAILED = "This file could not be converted."
DAMAGE_MARKERS = ("moov atom not found", "Invalid data found", "partial file",
                  "File ended prematurely", "corrupt input packet", "EBML header parsing failed")
CODEC_MARKERS = ("Decoder (codec", "Unknown decoder", "unsupported codec", "Unsupported codec",
                 "Could not find codec parameters")


class ProcessingFailed(Exception):
    """Processing stopped: `reason` is for the teacher, `transient` says a retry may succeed."""

    def __init__(self, reason: str, *, transient: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


def run_ffmpeg(args: list[str], duration: float | None, report: Callable[[float], None],
               deadline: float | None) -> tuple[float, str]:
    """Run ffmpeg, reporting the fraction done from `-progress`; ProcessingFailed on failure.

    ffmpeg gets its own process group (killed as one) and dies with this process, so a
    SIGKILLed worker leaves nothing writing. Returns the seconds of output written and the
    tail of its warnings, which go to a file: a pipe nobody reads could fill and block it.
    """
    command = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "warning", "-nostats",
               "-progress", "pipe:1", "-y", *args]
    timed_out = threading.Event()
    out_seconds = 0.0
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=errors, start_new_session=True,
                                   preexec_fn=partial(die_with_parent, os.getpid()))
        timer = None
        if deadline is not None:
            timer = threading.Timer(max(deadline - time.monotonic(), 0),
                                    lambda: (timed_out.set(), _kill(process, wait=False)))
            timer.start()
        try:
            for line in process.stdout:
                key, _, value = line.strip().partition(b"=")
                if key == b"out_time_us" and value.isdigit():
                    out_seconds = int(value) / 1_000_000
                    if duration:
                        report(min(1.0, out_seconds / duration))
            process.wait()
        finally:
            if timer:
                timer.cancel()
            if process.returncode is None:
                _kill(process)
            process.stdout.close()
        errors.seek(0)
        stderr = errors.read()[-16_384:].decode("utf-8", "replace")
    if timed_out.is_set():
        raise ProcessingFailed(TOO_LONG, transient=True)
    if process.returncode != 0:
        raise failure(process.returncode, stderr)
    return out_seconds, stderr


def _kill(process: subprocess.Popen, *, wait: bool = True) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if wait:
        process.wait()


def _find_prctl() -> Callable[..., int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None


_prctl = _find_prctl()  # looked up here: the forked child should only call it


def die_with_parent(parent: int) -> None:
    """In the child before exec: SIGKILL when `parent` dies (Linux; elsewhere a no-op)."""
    if _prctl is None:
        return
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl: nobody wants the result
        os._exit(1)


def failure(returncode: int, stderr: str) -> ProcessingFailed:
    """The teacher's reason for an ffmpeg/ffprobe failure, logged with ffmpeg's own words."""
    last = stderr.strip().splitlines()[-1:] or [""]
    log.warning("transcode: ffmpeg exited %s: %s", returncode, last[0][:500])
    if "No space left on device" in stderr:
        return ProcessingFailed(NO_SPACE, transient=True)
    if returncode < 0 or "received signal" in stderr:
        return ProcessingFailed(INTERRUPTED, transient=True)
    if any(marker in stderr for marker in CODEC_MARKERS):
        return ProcessingFailed(UNSUPPORTED)
    if any(marker in stderr for marker in DAMAGE_MARKERS):
        return ProcessingFailed(DAMAGED)
    return ProcessingFailed(FAILED)


_filters: set[str] | None = None


def has_filter(name: str) -> bool:
    """Whether this ffmpeg build has a filter (zscale needs libzimg), asked once."""
    global _filters
    if _filters is None:
        listing = subprocess.run([FFMPEG, "-hide_banner", "-filters"], capture_output=True,
                                 text=True, stdin=subprocess.DEVNULL, timeout=PROBE_TIMEOUT)
        _filters = {line.split()[1] for line in listing.stdout.splitlines()
                    if len(line.split()) > 1}
    return name in _filters
