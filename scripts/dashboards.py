"""Write Orasi's four Grafana dashboards to helm/orasi/files/monitoring/dashboards/*.json.

    python scripts/dashboards.py           # write the files
    python scripts/dashboards.py --check   # exit 1 if a file differs from what this writes

The JSON files are what Grafana imports and what the chart ships; this script and the package
beside it are their source, so that the four dashboards share one layout, one `region` variable
and one way of writing a query (the building blocks are in scripts/grafana.py; the dashboards,
one module each, in scripts/dashboards/; this file writes or checks them). Every query uses only
metrics the services export on their admin port, with the target labels of
../helm/orasi/files/monitoring/scrape.yaml (`region`, `component`, `pod`); the tests in
tests/monitoring/ check both against a running `orasi up`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Run as a script, this folder is on sys.path and this file is __main__, so `dashboards` is the
# package scripts/dashboards/: a folder with an __init__.py is found before a .py file of the
# same name (PEP 420's search order). mypy, given this file, takes it for `dashboards` itself.
from dashboards import DASHBOARDS

OUT = Path(__file__).resolve().parent.parent / "helm" / "orasi" / "files" / "monitoring" / "dashboards"


def render(name: str) -> str:
    return json.dumps(DASHBOARDS[name](), indent=2) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is not what this writes")
    args = parser.parse_args()
    stale = []
    for name in DASHBOARDS:
        path = OUT / f"{name}.json"
        text = render(name)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for path in stale:
        print(f"{path} is not what scripts/dashboards.py writes; run it", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
