"""The report of an ``orasi bench`` run: text, JSON, the progress line and the PNG plot."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO


def text(result: dict[str, Any]) -> str:
    """The report as a few aligned lines."""
    items, requests, latency = result["items"], result["requests"], result["latency_ms"] or {}
    rate = "max" if result["rate"] is None else f"{result['rate']:,.0f} items/s"
    refused = ", ".join(f"{name} {count:,}" for name, count in items["refused_by_status"].items())
    lines = [
        f"orasi bench: {result['protocol']} {result['signal']} to {result['endpoint']}, "
        f"{result['duration_s']:g} s at {rate}, {result['workers']} workers, source {result['source']} "
        f"({result['items_per_request']:,.0f} items per request)",
        f"  items      sent {items['sent']:>12,}   acknowledged {items['acknowledged']:>12,}   "
        f"refused {items['refused']:>10,}" + (f" ({refused})" if refused else ""),
        f"  requests   sent {requests['sent']:>12,}   acknowledged {requests['acknowledged']:>12,}   "
        f"refused {requests['refused']:>10,}   unanswered {requests['unanswered']:,}",
        f"  throughput {result['throughput']['items_per_s']:,.0f} items/s "
        f"({result['throughput']['requests_per_s']:,.1f} requests/s)"
        + (f", {result['late_sends']:,} sends late" if result["rate"] is not None else ""),
        "  latency    "
        + ("no answers" if not latency else "   ".join(f"{k} {v:,.1f} ms" for k, v in latency.items())),
    ]
    return "\n".join(lines)


class Progress:
    """One line rewritten in place on a terminal (nothing when ``stream`` is not a TTY)."""

    def __init__(self, duration: float, stream: TextIO = sys.stderr) -> None:
        self.duration = duration
        self.stream = stream
        self.enabled = stream.isatty()

    def show(self, elapsed: float, sent: int, acked: int, refused: int) -> None:
        if not self.enabled:
            return
        done = min(1.0, elapsed / self.duration) if self.duration > 0 else 1.0
        bar = "#" * int(done * 30)
        self.stream.write(
            f"\r[{bar:<30}] {elapsed:5.1f}/{self.duration:g} s  sent {sent:,}  "
            f"acknowledged {acked:,}  refused {refused:,}  "
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def plot(result: dict[str, Any], path: Path) -> None:
    """A PNG of throughput (items/s acknowledged and refused) and latency (p50, p99) per second.

    matplotlib is imported here, only when a plot is asked for: it is the optional extra
    ``orasi[bench]``, heavy to import and not needed by anything else.
    """
    try:
        import matplotlib
    except ImportError:
        raise SystemExit(
            "orasi bench --plot needs matplotlib: pip install 'orasi[bench]' (or pip install matplotlib)"
        ) from None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    rows = result["timeline"]
    seconds = [row["t_s"] for row in rows]
    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(9, 6), dpi=100)
    top.plot(seconds, [row["items_acknowledged_per_s"] for row in rows], label="acknowledged")
    top.plot(seconds, [row["items_refused_per_s"] for row in rows], label="refused")
    top.set_ylabel(f"{result['signal']} items/s")
    top.legend(loc="upper right")
    top.grid(alpha=0.3)
    for name in ("p50", "p99"):
        values = [(row["latency_ms"] or {}).get(name) for row in rows]
        bottom.plot(seconds, [float("nan") if v is None else v for v in values], label=name)
    bottom.set_ylabel("latency, ms")
    bottom.set_xlabel("seconds since the start")
    bottom.legend(loc="upper right")
    bottom.grid(alpha=0.3)
    figure.suptitle(f"orasi bench: {result['protocol']} {result['signal']} to {result['endpoint']}")
    figure.tight_layout()
    figure.savefig(path, format="png")
    plt.close(figure)


__all__ = ["Progress", "plot", "text"]
