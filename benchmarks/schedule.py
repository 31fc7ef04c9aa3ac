"""Benchmark: where a `gigassl run` spends its wall time, replayed from the times it recorded.

`gigassl run` records each execution's seconds in ``runs/<profile>/runner.json``. This script replays the plan with
those times under the runner's own rule (:func:`gigassl.book.runner.replay`: plan order, ``needs``, ``alone``, on
``--jobs`` lanes) and prints the replayed span beside the recorded one (equal when the replay is faithful), the sum
of the executions, its bound (the ``alone`` executions, which use every core, plus the others' sum / jobs: no lane
ever idle), the idle lane-seconds, the critical path (the longest chain of ``needs``) and the executions that ran
while a lane stood idle. Replaying a changed plan (``--plan``) with the same times says what the change would save
before a 35-minute ``make book`` measures it.

Usage: ``python benchmarks/schedule.py --runner runs/demo/runner.json [--plan experiments.yml] [--profile demo]
[--jobs 2]``. ``--dry-run``: a four-execution plan and its record, written on the fly.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import tempfile
from pathlib import Path

from _cohort import dry_run_option, machine

from gigassl.book.runner import load_plan, replay

ROOT = Path(__file__).resolve().parents[1]
DRY_PLAN = {"executions": [{"name": "a", "notebook": "n"}, {"name": "b", "notebook": "n", "needs": ["a"]},
                           {"name": "c", "notebook": "n", "needs": ["a"]}, {"name": "d", "notebook": "n",
                                                                           "needs": ["b", "c"]}]}
DRY_SECONDS = {"a": 10.0, "b": 30.0, "c": 5.0, "d": 2.0}


def recorded_span(record: dict) -> float:
    """First start to last end of a runner.json (each entry: ``seconds`` and the ISO time it ``finished``)."""
    ends = [dt.datetime.fromisoformat(r["finished"]) for r in record.values()]
    starts = [e - dt.timedelta(seconds=r["seconds"]) for e, r in zip(ends, record.values())]
    return (max(ends) - min(starts)).total_seconds()


def critical_path(plan, seconds: dict) -> tuple[float, list[str]]:
    """The longest chain of ``needs`` (its seconds and names, first to last)."""
    best: dict[str, tuple[float, list[str]]] = {}
    for e in plan:  # plan order: every need comes earlier
        before = max((best[n] for n in e.needs if n in best), default=(0.0, []), key=lambda b: b[0])
        best[e.name] = (before[0] + seconds[e.name], before[1] + [e.name])
    return max(best.values(), key=lambda b: b[0])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runner", default="runs/demo/runner.json", help="the record of a run (runner.json)")
    parser.add_argument("--plan", default=str(ROOT / "experiments.yml"), help="the plan to replay")
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--jobs", type=int, default=2)
    dry_run_option(parser)
    args = parser.parse_args(argv)
    print(f"machine: {machine()}")
    if args.dry_run:
        import yaml

        folder = Path(tempfile.mkdtemp(prefix="schedule_"))
        args.plan = folder / "plan.yml"
        args.plan.write_text(yaml.safe_dump(DRY_PLAN))
        now = dt.datetime(2026, 1, 1)
        ends = {"a": 10.0, "b": 40.0, "c": 15.0, "d": 42.0}
        record = {n: {"seconds": s, "finished": (now + dt.timedelta(seconds=ends[n])).isoformat()}
                  for n, s in DRY_SECONDS.items()}
    else:
        record = json.loads(Path(args.runner).read_text())
    plan = load_plan(args.plan, args.profile)
    seconds = {name: float(r["seconds"]) for name, r in record.items()}
    schedule = replay(plan, seconds, args.jobs)
    span = max(end for _, end, _ in schedule)
    total = sum(seconds[e.name] for e in plan)
    path_seconds, path = critical_path(plan, seconds)
    events = sorted({t for start, end, _ in schedule for t in (start, end)})
    alone = {e.name for e in plan if e.alone}  # it uses every core itself: no lane idles beside it
    idle, beside_idle = 0.0, set()
    for a, b in itertools.pairwise(events):
        busy = [name for start, end, name in schedule if start <= a and end >= b]
        free = 0 if alone & set(busy) else args.jobs - len(busy)
        idle += free * (b - a)
        if free:
            beside_idle.update(busy)
    print(f"executions: {len(plan)}")
    print(f"recorded_span_seconds: {recorded_span(record):.0f}")
    print(f"replayed_span_seconds: {span:.0f}")
    print(f"sum_seconds: {total:.0f}")
    by_alone = sum(seconds[e.name] for e in plan if e.alone)
    print(f"bound_seconds: {by_alone + (total - by_alone) / args.jobs:.0f}")
    print(f"idle_lane_seconds: {idle:.0f}")
    print(f"critical_path_seconds: {path_seconds:.0f} ({' -> '.join(path)})")
    print(f"running beside an idle lane: {', '.join(sorted(beside_idle)) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
