"""Launch budget: the CPU of each part of a returning student's round trip, in the tool and in
the minimal PyLTI1p3 baseline, in one process, and how much of the tool's own work fits the
launch goal (server CPU per round trip at most 1.4x the baseline's).

    .venv/bin/python bench/launch_budget.py [--launches N]
        [--database-url postgresql://…] [--redis-url redis://…]

Both apps are driven by the same round trip as `launch_profile.py` (Flask's test client, the
in-process BenchPlatform signing real id_tokens), in alternating blocks so that a shared
machine's drift falls on both alike; CPU is this one thread's (`time.process_time`). The tool's
launch POST is split into its parts by timing the functions that do them: the id_token's
validation (`ToolMessageLaunch.validate`: what the baseline's launch also does), provisioning
(`provision_launch`), the rest of `run_launch` (the launch-log row, the roster check), the page
the launch answers with (`_page_in_place`), and what is left of the request (form, session,
sign-in, commit, headers).

Only the apps run here: gunicorn's own cost per request (0.4-0.6 ms on the bench VM) comes on
top of both in `launch_bench.py`, where the baseline makes one request more.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import secrets
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_platform import CLIENT_ID, DEPLOYMENT_ID, BenchPlatform, write_rsa_key  # noqa: E402
from launch_profile import (  # noqa: E402
    STEPS,
    in_process_run,
    make_app,
    register,
    round_trip,
)

GOAL_CPU_RATIO = 1.4
BLOCKS = 4  # alternating blocks per app


def baseline_app(platform: BenchPlatform, folder: Path, redis_url: str | None, prefix: str):
    folder.mkdir(parents=True)
    private, public = write_rsa_key(folder)
    p = platform.base
    config = folder / "config.json"
    config.write_text(json.dumps({
        "issuer": platform.issuer, "client_id": CLIENT_ID, "auth_login_url": f"{p}/auth",
        "auth_token_url": f"{p}/token", "key_set_url": f"{p}/jwks",
        "deployment_ids": [DEPLOYMENT_ID], "private_key_file": str(private),
        "public_key_file": str(public), "secret_key": secrets.token_hex(32),
        "redis_url": redis_url, "cache_dir": str(folder / "cache"),
        "cache_key_prefix": f"{prefix}baseline:",
    }))
    os.environ["BASELINE_CONFIG"] = str(config)
    import baseline_tool

    return baseline_tool.create_app()


class PartTimer:
    """CPU seconds spent inside the wrapped functions (outermost call only)."""

    def __init__(self) -> None:
        self.seconds: Counter = Counter()
        self.active = False

    def wrap(self, owner, name: str, part: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if not self.active:
                return original(*args, **kwargs)
            start = time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[part] += time.process_time() - start

        setattr(owner, name, timed)


def time_parts(timer: PartTimer) -> None:
    from lti_tool.launch import views
    from lti_tool.services import launches
    from lti_tool.services.message_launch import ToolMessageLaunch

    timer.wrap(views.launches, "run_launch", "run_launch")
    timer.wrap(ToolMessageLaunch, "validate", "validation")
    timer.wrap(launches, "provision_launch", "provisioning")
    timer.wrap(views, "_page_in_place", "the page")


def measure(app, platform: BenchPlatform, users: list[str], steps: Counter) -> None:
    last = [time.process_time()]

    def between(step: str) -> None:
        now = time.process_time()
        steps[step] += now - last[0]
        last[0] = time.process_time()

    for user in users:
        last[0] = time.process_time()
        round_trip(app, platform, user, between)


def report(tool: Counter, base: Counter, parts: Counter, trips: int) -> None:
    def ms(seconds: float) -> float:
        return seconds * 1000 / trips

    shown = [s for s in STEPS if "platform" not in s]  # the platform's signing is neither's
    print(f"\nCPU ms per returning student's round trip, in-process (mean of {trips} each):")
    print(f"  {'step':24} {'tool':>7} {'baseline':>9}")
    for step in shown:
        print(f"  {step:24} {ms(tool[step]):7.2f} {ms(base[step]):9.2f}")
    tool_total, base_total = (sum(ms(c[s]) for s in shown) for c in (tool, base))
    print(f"  {'round trip':24} {tool_total:7.2f} {base_total:9.2f}   "
          f"tool / baseline {tool_total / base_total:.2f}x")

    launch = ms(tool["launch POST"])
    split = {
        "validation": ms(parts["validation"]),
        "provisioning": ms(parts["provisioning"]),
        "launch log and the rest of run_launch":
            ms(parts["run_launch"] - parts["validation"] - parts["provisioning"]),
        "the page": ms(parts["the page"]),
    }
    split["the request (form, session, sign-in, commit)"] = launch - sum(split.values())
    print("\nthe tool's launch POST, by part (CPU ms per round trip):")
    for part, value in split.items():
        print(f"  {part:46} {value:6.2f}")
    request = split["the request (form, session, sign-in, commit)"]
    own_work = split["provisioning"] + split["launch log and the rest of run_launch"] \
        + split["the page"]
    logins = sum(ms(tool[s]) - ms(base[s]) for s in STEPS[:2])
    base_launch = ms(base["launch POST"]) + ms(base["landing page"])
    budget = (GOAL_CPU_RATIO - 1) * base_total
    print(f"\nthe goal ({GOAL_CPU_RATIO}x the baseline's CPU) leaves {budget:.2f} ms per round "
          "trip for all the tool does beyond the baseline; in this run the tool spends:")
    print(f"  {'provisioning, launch log and the page':46} {own_work:6.2f}")
    print(f"  {'launch request beyond the baseline launch':46} "
          f"{launch - own_work - base_launch:6.2f}   (validation {split['validation']:.2f} "
          f"and the request {request:.2f}, against the baseline's launch and landing "
          f"{base_launch:.2f})")
    print(f"  {'the two login requests beyond the baseline':46} {logins:6.2f}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=int, default=400,
                        help="measured round trips per app (default 400)")
    parser.add_argument("--database-url", help="postgresql://… server (default: SQLite)")
    parser.add_argument("--redis-url", help="redis://… (default: the file cache)")
    args = parser.parse_args(argv)
    if not BLOCKS <= args.launches <= 100_000:
        parser.error(f"--launches must be {BLOCKS}..100000")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with in_process_run("launch_budget", args.database_url, args.redis_url) as (
            tmp, url, prefix, platform):
        tool = make_app(url, tmp / "instance", args.redis_url, f"{prefix}tool:")
        register(tool, platform)
        base = baseline_app(platform, tmp / "baseline", args.redis_url, prefix)
        setup = ("PostgreSQL" if args.database_url else "SQLite") + (
            " + Redis" if args.redis_url else " + file cache")
        print(f"launch budget: {setup}, {args.launches} round trips per app in "
              f"{BLOCKS} alternating blocks, 100 returning students")
        users = [str(2001 + n) for n in range(100)]
        for app in (tool, base):  # every student once, then a warm-up
            measure(app, platform, users + users[:50], Counter())
        timer = PartTimer()
        time_parts(timer)
        tool_steps, base_steps = Counter(), Counter()
        block = [users[n % len(users)] for n in range(args.launches // BLOCKS)]
        for _ in range(BLOCKS):
            timer.active = True
            measure(tool, platform, block, tool_steps)
            timer.active = False
            measure(base, platform, block, base_steps)
        report(tool_steps, base_steps, timer.seconds, len(block) * BLOCKS)
        from lti_tool.extensions import db

        with tool.app_context():
            db.session.remove()
            db.engine.dispose()


if __name__ == "__main__":
    main()
