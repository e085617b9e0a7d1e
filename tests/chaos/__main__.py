"""Command line: `python -m tests.chaos [--quick] [--only NAME ...] [--json PATH] [--seed N]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.chaos.scenarios import SCENARIOS


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos",
        description="Failure scenarios against the real noida broker, `modelmon worker` processes, the "
        "ClickHouse sink and chDB. Prints one table; exit status 1 if any scenario is not ok.",
        epilog="scenarios: " + ", ".join(SCENARIOS),
    )
    parser.add_argument("--quick", action="store_true", help="the same scenarios with smaller numbers")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=list(SCENARIOS), help="run only these")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--seed", type=int, default=11, help="seed of every random choice (default 11)")
    parser.add_argument("--keep", action="store_true", help="keep the work directories of passed scenarios")
    # Internal: run one scenario in this process (the runner starts one process per scenario).
    parser.add_argument("--child", choices=list(SCENARIOS), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from tests.chaos.runner import run_all, run_child

    if args.child:
        if args.workdir is None or args.json is None:
            raise SystemExit("--child needs --workdir and --json")
        return run_child(args.child, args.workdir, quick=args.quick, seed=args.seed, json_path=args.json)
    names = list(dict.fromkeys(args.only or SCENARIOS))
    try:
        return run_all(names, quick=args.quick, seed=args.seed, json_path=args.json, keep=args.keep)
    except KeyboardInterrupt:
        print("interrupted: the running scenario and its processes were stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
