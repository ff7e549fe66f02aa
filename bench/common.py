"""What the request benchmarks share: timing a page and printing the size comparison."""

from __future__ import annotations

import statistics
import time


def median_ms(client, url: str, repeat: int) -> float:
    """The median time of `repeat` GETs of `url`, each of which must answer 200."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    return statistics.median(times)


def print_comparison(label: str, results: dict[int, dict[str, float]]) -> None:
    """One row of figures per size, then the ratio of the largest size to the smallest."""
    names = list(next(iter(results.values())))
    print(f"{label:>10}  " + "  ".join(f"{name:>14}" for name in names))
    for size, figures in results.items():
        print(f"{size:>10,}  " + "  ".join(f"{figures[name]:>14.1f}" for name in names))
    small, large = results[min(results)], results[max(results)]
    print("ratio       " + "  ".join(f"{large[n] / small[n]:>14.2f}" for n in names))
