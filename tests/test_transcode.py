"""The ffmpeg pipeline on tiny generated clips: what comes out plays in every browser."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lti_tool.services import transcode
from lti_tool.services.transcode import ProcessingFailed

pytestmark = pytest.mark.skipif(
    subprocess.run(["which", "ffmpeg"], capture_output=True).returncode != 0,
    reason="ffmpeg is not installed")

PICTURE = ["-f", "lavfi", "-i", "testsrc2=s={size}:r={fps}:d={seconds}"]
SOUND = ["-f", "lavfi", "-i", "sine=frequency=440:d={seconds}"]
AAC = ["-c:a", "aac", "-b:a", "64k"]
CLIPS = {
    # name: (picture size or None, seconds, ffmpeg output options)
    "moov_at_end.mp4": ("320x240", 2, ["-c:v", "libx264", "-pix_fmt", "yuv420p", *AAC]),
    "hevc.mov": ("320x240", 2, ["-c:v", "libx265", "-x265-params", "log-level=error",
                                "-tag:v", "hvc1", *AAC]),
    "vp9.webm": ("320x240", 2, ["-c:v", "libvpx-vp9", "-deadline", "realtime",
                                "-c:a", "libopus"]),
    "ten_bit.mp4": ("320x240", 2, ["-c:v", "libx264", "-pix_fmt", "yuv420p10le", *AAC]),
    "hlg.mov": ("320x240", 2, ["-c:v", "libx265", "-x265-params", "log-level=error",
                               "-pix_fmt", "yuv420p10le", "-color_primaries", "bt2020",
                               "-color_trc", "arib-std-b67", "-colorspace", "bt2020nc", *AAC]),
    "silent.mp4": ("320x240", 2, ["-c:v", "libx264", "-an"]),
    "odd.webm": ("321x241", 2, ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-an"]),
    "fast.webm": ("160x120", 2, ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-an"]),
    "interlaced.mp4": ("320x240", 2, ["-c:v", "libx264", "-flags", "+ildct+ilme",
                                      "-x264-params", "tff=1", *AAC]),
    "wide.mp4": ("640x360", 2, ["-c:v", "libx264", "-preset", "ultrafast", *AAC]),
    "hd.mp4": ("1280x720", 2, ["-c:v", "libx264", "-preset", "ultrafast", *AAC]),
    "big.mp4": ("1600x1200", 1, ["-c:v", "libx264", "-preset", "ultrafast", *AAC]),
    "long.mp4": ("640x360", 8, ["-c:v", "libx264", "-preset", "ultrafast", *AAC]),
    "tone.wav": (None, 2, []),
    "tone.mp3": (None, 2, ["-c:a", "libmp3lame"]),
}


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, timeout=120)


def ffprobe(path: Path) -> dict:
    result = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_format",
                             "-show_streams", str(path)], capture_output=True, check=True)
    return json.loads(result.stdout)


def stream(info: dict, kind: str) -> dict:
    return next(s for s in info["streams"] if s["codec_type"] == kind)


def top_level_boxes(path: Path) -> list[str]:
    """The MP4's top-level box types in file order."""
    data, at, boxes = path.read_bytes(), 0, []
    while at + 8 <= len(data):
        size = int.from_bytes(data[at:at + 4], "big")
        boxes.append(data[at + 4:at + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[at + 8:at + 16], "big")
        if size < 8:
            break
        at += size
    return boxes


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    made = {}
    for name, (size, seconds, options) in CLIPS.items():
        fps = 120 if name == "fast.webm" else 25
        inputs = [part.format(size=size, fps=fps, seconds=seconds) for part in PICTURE
                  ] if size else []
        inputs += [part.format(seconds=seconds) for part in SOUND]
        maps = ["-map", "0:v", "-map", "1:a"] if size else []
        ffmpeg(*inputs, *maps, *options, "-shortest", str(folder / name))
        made[name] = folder / name
    made["rotated.mp4"] = folder / "rotated.mp4"  # as a phone holds it: stored 320x240, shown 90°
    ffmpeg("-i", str(made["moov_at_end.mp4"]), "-c", "copy", "-metadata:s:v:0", "rotate=90",
           str(made["rotated.mp4"]))
    made["portrait_hd.mp4"] = folder / "portrait_hd.mp4"
    ffmpeg("-i", str(made["hd.mp4"]), "-c", "copy", "-metadata:s:v:0", "rotate=90",
           str(made["portrait_hd.mp4"]))
    made["cover.mp3"] = folder / "cover.mp3"
    ffmpeg("-i", str(made["tone.mp3"]), "-f", "lavfi", "-i", "color=red:s=64x64:d=0.04",
           "-map", "0", "-map", "1", "-c:a", "copy", "-c:v", "mjpeg",
           "-disposition:v", "attached_pic", str(made["cover.mp3"]))
    (folder / "words.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nHello\n")
    made["subtitles.mkv"] = folder / "subtitles.mkv"
    ffmpeg("-i", str(folder / "words.srt"), "-c:s", "srt", str(made["subtitles.mkv"]))
    for name in ("moov_at_end.mp4", "vp9.webm"):
        faststart = folder / f"faststart_{name}"
        ffmpeg("-i", str(made[name]), "-c", "copy", "-movflags", "+faststart", str(faststart))
        data = faststart.read_bytes()
        made[f"truncated_{name}"] = folder / f"truncated_{name}"
        made[f"truncated_{name}"].write_bytes(data[:len(data) * 6 // 10])
    data = made["moov_at_end.mp4"].read_bytes()
    made["truncated_index.mp4"] = folder / "truncated_index.mp4"  # the index never arrived
    made["truncated_index.mp4"].write_bytes(data[:len(data) * 6 // 10])
    return made


def assert_plays_everywhere(folder: Path, result: transcode.Renditions, seconds: float) -> dict:
    """H.264 High 8-bit 4:2:0 + AAC, index first, no rotation left, poster and preview made."""
    assert result.kind == "video"
    mp4 = folder / result.playback
    info = ffprobe(mp4)
    video = stream(info, "video")
    assert (video["codec_name"], video["profile"], video["pix_fmt"]) == ("h264", "High",
                                                                          "yuv420p")
    assert not video.get("side_data_list")
    assert (video["width"], video["height"]) == (result.width, result.height)
    assert abs(float(info["format"]["duration"]) - seconds) < 0.3
    assert abs(result.duration - seconds) < 0.3
    assert info["format"].get("tags", {}).keys() <= {"major_brand", "minor_version",
                                                     "compatible_brands", "encoder"}
    boxes = top_level_boxes(mp4)
    assert boxes.index("moov") < boxes.index("mdat")
    poster = stream(ffprobe(folder / result.poster), "video")
    assert (poster["width"], poster["height"]) == (result.width, result.height)
    preview = stream(ffprobe(folder / result.preview), "video")
    assert max(preview["width"], preview["height"]) <= transcode.PREVIEW_SIZE
    return info


def master_rungs(folder: Path) -> list[dict]:
    """Each variant of the master playlist: its attributes and its playlist's segments."""
    master = (folder / "hls" / "master.m3u8").read_text()
    assert master.startswith("#EXTM3U")
    rungs = []
    for attributes, uri in re.findall(r"#EXT-X-STREAM-INF:(.*)\n(.*)", master):
        playlist = folder / "hls" / uri
        text = playlist.read_text()
        assert "#EXT-X-PLAYLIST-TYPE:VOD" in text and "#EXT-X-ENDLIST" in text
        segments = [playlist.parent / line for line in text.splitlines()
                    if line and not line.startswith("#")]
        assert segments and all(s.stat().st_size > 0 for s in segments)
        assert (playlist.parent / "init.mp4").is_file()
        rungs.append({"bandwidth": int(re.search(r"\bBANDWIDTH=(\d+)", attributes)[1]),
                      "resolution": re.search(r"RESOLUTION=(\d+x\d+)", attributes)[1],
                      "codecs": re.search(r'CODECS="([^"]+)"', attributes)[1],
                      "uri": uri})
    return rungs


@pytest.mark.parametrize("name", ["moov_at_end.mp4", "hevc.mov", "vp9.webm"])
def test_common_uploads_become_one_h264_mp4_with_its_index_first(clips, tmp_path, name):
    if name == "moov_at_end.mp4":
        boxes = top_level_boxes(clips[name])
        assert boxes.index("mdat") < boxes.index("moov")  # the upload cannot start streaming
    percents = []
    result = transcode.process(clips[name], tmp_path / "out", progress=percents.append)
    info = assert_plays_everywhere(tmp_path / "out", result, 2)
    audio = stream(info, "audio")
    assert (audio["codec_name"], audio["channels"]) == ("aac", 2)
    assert percents == sorted(set(percents)) and percents[-1] == 100
    [rung] = master_rungs(tmp_path / "out")
    assert rung["resolution"] == "320x240" and rung["codecs"].startswith("avc1.64")
    assert "mp4a.40.2" in rung["codecs"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp folder left


def test_phone_video_is_turned_upright(clips, tmp_path):
    assert transcode.probe(clips["rotated.mp4"]).video.rotation in (90, 270)
    result = transcode.process(clips["rotated.mp4"], tmp_path / "out")
    assert (result.width, result.height) == (240, 320)
    assert_plays_everywhere(tmp_path / "out", result, 2)


@pytest.mark.parametrize("name", ["ten_bit.mp4", "hlg.mov"])
def test_ten_bit_and_hdr_become_8_bit_high_profile(clips, tmp_path, name):
    result = transcode.process(clips[name], tmp_path / "out")
    video = stream(assert_plays_everywhere(tmp_path / "out", result, 2), "video")
    if name == "hlg.mov":
        assert result.probe.video.hdr
        assert video.get("color_transfer") not in ("arib-std-b67", "smpte2084")


def test_interlaced_video_is_deinterlaced(clips, tmp_path):
    assert transcode.probe(clips["interlaced.mp4"]).video.interlaced
    result = transcode.process(clips["interlaced.mp4"], tmp_path / "out")
    video = stream(assert_plays_everywhere(tmp_path / "out", result, 2), "video")
    assert video.get("field_order", "progressive") == "progressive"


def test_odd_sizes_become_even(clips, tmp_path):
    result = transcode.process(clips["odd.webm"], tmp_path / "out")
    assert (result.width, result.height) == (320, 240)
    assert_plays_everywhere(tmp_path / "out", result, 2)


def test_frame_rates_above_60_are_capped(clips, tmp_path):
    result = transcode.process(clips["fast.webm"], tmp_path / "out")
    video = stream(assert_plays_everywhere(tmp_path / "out", result, 2), "video")
    assert video["avg_frame_rate"] == "60/1"


def test_video_without_sound_has_no_audio_track(clips, tmp_path):
    result = transcode.process(clips["silent.mp4"], tmp_path / "out")
    info = assert_plays_everywhere(tmp_path / "out", result, 2)
    assert [s["codec_type"] for s in info["streams"]] == ["video"]
    [rung] = master_rungs(tmp_path / "out")
    assert rung["codecs"].startswith("avc1.") and "mp4a" not in rung["codecs"]


def test_a_360p_source_gets_one_rung_copied_from_the_mp4(clips, tmp_path):
    timings = {}
    result = transcode.process(clips["wide.mp4"], tmp_path / "out", timings=timings)
    assert (result.width, result.height) == (640, 360)
    assert [r["resolution"] for r in master_rungs(tmp_path / "out")] == ["640x360"]
    assert "hls/360p (copy)" in timings


def test_a_720p_source_gets_360p_and_720p_rungs_that_count_video(clips, tmp_path):
    result = transcode.process(clips["hd.mp4"], tmp_path / "out")
    assert (result.width, result.height) == (1280, 720)
    rungs = master_rungs(tmp_path / "out")
    assert [r["resolution"] for r in rungs] == ["640x360", "1280x720"]
    audio_only = 128_000 * 1.1
    assert all(r["bandwidth"] > audio_only for r in rungs)
    assert rungs[0]["bandwidth"] < rungs[1]["bandwidth"]
    for rung in rungs:
        segment = next((tmp_path / "out" / "hls" / rung["uri"]).parent.glob("seg_*.m4s"))
        assert segment.stat().st_size > 0


def test_a_portrait_phone_video_gets_portrait_rungs(clips, tmp_path):
    result = transcode.process(clips["portrait_hd.mp4"], tmp_path / "out")
    assert (result.width, result.height) == (720, 1280)
    assert [r["resolution"] for r in master_rungs(tmp_path / "out")] == ["360x640", "720x1280"]


def test_a_source_above_1080p_is_capped_and_gets_three_rungs(clips, tmp_path):
    result = transcode.process(clips["big.mp4"], tmp_path / "out")
    assert (result.width, result.height) == (1440, 1080)  # 4:3 kept, 1080 lines at most
    assert [r["resolution"] for r in master_rungs(tmp_path / "out")] == [
        "480x360", "960x720", "1440x1080"]


@pytest.mark.parametrize("name", ["tone.wav", "tone.mp3", "cover.mp3"])
def test_sound_becomes_aac_m4a(clips, tmp_path, name):
    result = transcode.process(clips[name], tmp_path / "out")
    assert (result.kind, result.playback, result.hls) == ("audio", "audio.m4a", None)
    info = ffprobe(tmp_path / "out" / "audio.m4a")
    assert [(s["codec_type"], s["codec_name"]) for s in info["streams"]] == [("audio", "aac")]
    assert abs(float(info["format"]["duration"]) - 2) < 0.3
    boxes = top_level_boxes(tmp_path / "out" / "audio.m4a")
    assert boxes.index("moov") < boxes.index("mdat")
    if name == "cover.mp3":  # the album picture is the poster, not a video
        assert result.probe.video is None
        assert (tmp_path / "out" / result.poster).is_file()
        assert (tmp_path / "out" / result.preview).is_file()
    else:
        assert result.poster is None and result.preview is None


@pytest.mark.parametrize("name, reason", [
    ("subtitles.mkv", "This file has no video or audio stream."),
    ("truncated_index.mp4", "This file is damaged or incomplete: upload it again."),
    ("truncated_moov_at_end.mp4", "This file is damaged or incomplete: upload it again."),
    ("truncated_vp9.webm", "This file is damaged or incomplete: upload it again."),
])
def test_unplayable_files_fail_with_a_reason_for_the_teacher(clips, tmp_path, name, reason):
    with pytest.raises(ProcessingFailed) as failure:
        transcode.process(clips[name], tmp_path / "out")
    assert failure.value.reason == reason
    assert not failure.value.transient
    assert list(tmp_path.iterdir()) == []


def test_a_picture_is_not_media(tmp_path):
    picture = tmp_path / "picture.png"
    ffmpeg("-f", "lavfi", "-i", "color=blue:s=32x32:d=0.04", "-frames:v", "1", str(picture))
    with pytest.raises(ProcessingFailed, match="no video or audio stream"):
        transcode.process(picture, tmp_path / "out")


def ffmpeg_writing_under(folder: Path) -> list[str]:
    """Command lines of running ffmpeg processes that mention `folder`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        except OSError:
            continue
        command = b" ".join(argv).decode("utf-8", "replace")
        if Path(argv[0].decode()).name in ("ffmpeg", "ffprobe") and str(folder) in command:
            found.append(command)
    return found


def wait_for(condition, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_callback_that_raises_stops_ffmpeg_and_leaves_nothing(clips, tmp_path):
    class Stop(Exception):
        pass

    def stop_once_started(percent: int) -> None:
        if percent > 0:
            raise Stop

    with pytest.raises(Stop):
        transcode.process(clips["long.mp4"], tmp_path / "out", progress=stop_once_started)
    assert list(tmp_path.iterdir()) == []
    assert ffmpeg_writing_under(tmp_path) == []


def test_the_time_limit_stops_ffmpeg_as_a_transient_failure(clips, tmp_path):
    with pytest.raises(ProcessingFailed) as failure:
        transcode.process(clips["long.mp4"], tmp_path / "out", time_limit=0.5)
    assert failure.value.transient
    assert failure.value.reason[0].isupper()
    assert list(tmp_path.iterdir()) == []
    assert ffmpeg_writing_under(tmp_path) == []


def test_leftovers_of_a_killed_run_are_removed_and_old_output_replaced(clips, tmp_path):
    leftover = tmp_path / ".out.part-0123abcd"
    (leftover / "hls").mkdir(parents=True)
    (leftover / "video.mp4").write_bytes(b"half")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "video.mp4").write_bytes(b"an earlier rendition")
    transcode.process(clips["tone.wav"], tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["audio.m4a"]


def test_a_killed_worker_leaves_no_ffmpeg_and_the_next_run_cleans_up(clips, tmp_path):
    worker = subprocess.Popen([
        sys.executable, "-c",
        "import sys; from lti_tool.services import transcode;"
        "transcode.process(sys.argv[1], sys.argv[2])",
        str(clips["long.mp4"]), str(tmp_path / "out"),
    ], cwd=Path(__file__).resolve().parent.parent)
    try:
        assert wait_for(lambda: any(command.endswith("video.mp4")
                                    for command in ffmpeg_writing_under(tmp_path)))
    finally:
        worker.kill()
        worker.wait()
    assert wait_for(lambda: ffmpeg_writing_under(tmp_path) == [])
    [leftover] = tmp_path.iterdir()
    assert leftover.name.startswith(".out.part-")
    half = leftover / "video.mp4"  # an orphaned ffmpeg would have finished it, index and all
    assert not half.exists() or "moov" not in top_level_boxes(half)
    transcode.process(clips["tone.wav"], tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.fixture
def tiny_disk(tmp_path):
    """A 200 KB file system (needs root to mount a tmpfs; skipped otherwise)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(disk)],
            capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_is_a_transient_failure_that_leaves_nothing(clips, tiny_disk):
    with pytest.raises(ProcessingFailed) as failure:
        transcode.process(clips["long.mp4"], tiny_disk / "out")
    assert failure.value.transient
    assert failure.value.reason == "The server ran out of disk space while converting this file."
    assert list(tiny_disk.iterdir()) == []
