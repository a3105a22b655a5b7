"""The long fuzzing campaign: ``python -m tests.fuzz TARGET [--seconds N] [--hypothesis]``.

With atheris installed (the test extra) the target runs coverage-guided under libFuzzer: the
orasi modules are instrumented, the seed corpus is a sample of valid inputs (``inputs.VALID``),
and libFuzzer's ``-rss_limit_mb`` and ``-timeout`` hold the memory and time bounds of
``targets.check``. Without atheris, or with ``--hypothesis``, the target runs under its
structure-aware hypothesis inputs until the time is up. Either way a broken contract stops the
campaign with the input that broke it; exit status 0 means none was found.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# nothing of orasi's is imported here: atheris instruments the modules imported after it starts
_SETTINGS = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))
_NAMES = ["config", "otap", "otlp_json", "otlp_protobuf", "wirescan"]  # targets.TARGETS (tested)


def _hypothesis(name: str, seconds: float) -> int:
    from tests.fuzz.inputs import STRATEGIES
    from tests.fuzz.targets import TARGETS, check, peak_rss_mb

    target, baseline, stop, runs = TARGETS[name], peak_rss_mb(), time.monotonic() + seconds, 0
    while time.monotonic() < stop:

        @settings(_SETTINGS, max_examples=500)
        @given(STRATEGIES[name]())
        def run(data: bytes) -> None:
            check(target, data, baseline)

        run()
        runs += 500
    print(f"{name}: {runs} hypothesis examples in {seconds:.0f} s, no contract broken")
    return 0


def _seeds(name: str, into: Path, count: int = 64) -> None:
    from tests.fuzz.inputs import VALID

    found: list[bytes] = []

    @settings(_SETTINGS, max_examples=count)
    @given(st.data())
    def draw(data: st.DataObject) -> None:
        found.append(data.draw(VALID[name]()))

    draw()
    for index, seed in enumerate(found):
        (into / f"seed-{index}").write_bytes(seed)


def _atheris(name: str, seconds: float) -> int:
    import atheris

    with atheris.instrument_imports(include=["orasi_common"]):
        from tests.fuzz.targets import MAX_GROWTH_MB, MAX_SECONDS, TARGETS, peak_rss_mb
    target = TARGETS[name]

    def one(data: bytes) -> None:
        with contextlib.suppress(target.errors):
            target.run(data)

    corpus = Path(tempfile.mkdtemp(prefix=f"orasi-fuzz-{name}-"))
    _seeds(name, corpus)
    print(f"{name}: corpus in {corpus}", flush=True)
    atheris.Setup(
        [
            sys.argv[0],
            f"-max_total_time={int(seconds)}",
            f"-timeout={int(MAX_SECONDS)}",
            f"-rss_limit_mb={int(peak_rss_mb()) + MAX_GROWTH_MB}",
            "-max_len=65536",
            f"-artifact_prefix={corpus}/",
            str(corpus),
        ],
        one,
    )
    atheris.Fuzz()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=_NAMES)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--hypothesis", action="store_true", help="use hypothesis even if atheris is there")
    args = parser.parse_args()
    if not args.hypothesis:
        try:
            import atheris  # noqa: F401
        except ImportError:
            print("atheris is not installed: running hypothesis (pip install -e '.[test]')")
        else:
            return _atheris(args.target, args.seconds)
    return _hypothesis(args.target, args.seconds)


if __name__ == "__main__":
    sys.exit(main())
