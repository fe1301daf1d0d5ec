"""Mutation testing of the money-critical code: do the tests bite? A profile (not part of
scripts/test): the ledger's rules, idempotency keys, money, loan servicing and schedule, and the
authorization of every use case.

Each target module (scripts/mutation_targets.py) is changed in one small way at a time (a
comparison turned, a guard dropped, a bound removed, a rounding mode swapped, an authorization
check skipped: scripts/mutants.py; and the named mutants a review found alive), in a temporary
copy of the work tree, and the target's own fast test selection runs against that copy (pytest
-x: the first failure kills the mutant). A mutant no test kills is a change to the money or the
access rules that would ship unnoticed: it gets a test, or it is equivalent (no observable
behaviour changes) and says why in mutation_targets.EXPLAINED.

Usage: .venv/bin/python scripts/mutation.py [--module NAME ...] [--limit N] [--seed S] [--list]
  --module  target names (see --list); all by default
  --limit   at most N mutants per module, drawn with --seed (default: every mutant)
  --match   only the mutants whose title ("#index line N function: label") contains this text
Prints the table (module, mutants, killed, survived, kill rate), every survivor with its
explanation and every named mutant that could not be made; writes them to var/mutation/
(table.md, outcomes.json). Exits 1 below --fail-under percent, on a survivor not explained, or
on anything not measured (a named mutant whose snippet is gone, a target whose tests fail
unmutated). The whole profile takes about 20 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mutants import Mutant  # noqa: E402
from mutation_runner import Runner, work_copy  # noqa: E402
from mutation_targets import EXPLAINED, TARGETS, Target  # noqa: E402

OUT = ROOT / "var" / "mutation"


@dataclass
class Outcome:
    target: str
    index: int
    line: int
    function: str
    label: str
    status: str  # killed, survived, timeout
    seconds: float
    killer: str = ""  # the first test that failed (FAILED/ERROR line of pytest's summary)
    explanation: str = ""


@dataclass
class Tally:
    mutants: int = 0
    killed: int = 0
    survivors: list[Outcome] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return 100.0 * self.killed / self.mutants if self.mutants else 100.0


def main() -> int:
    args = _arguments()
    unknown = set(args.module or ()) - {t.name for t in TARGETS}
    if unknown:
        print(f"unknown module(s): {', '.join(sorted(unknown))}; known: {', '.join(t.name for t in TARGETS)}")
        return 2
    targets = [t for t in TARGETS if not args.module or t.name in args.module]
    chosen, unmeasured = {}, []
    for target in targets:
        mutants, missing = target.mutants(ROOT)
        unmeasured += missing
        mutants = [m for m in mutants if not args.match or args.match in _title(m)]
        chosen[target.name] = _sample(mutants, args.limit, args.seed)
    stale = _stale_explanations(targets) if not (args.match or args.limit) else []
    if args.list:
        _list(targets, chosen, unmeasured + stale)
        return 0
    os.nice(10)
    started = time.monotonic()
    outcomes: list[Outcome] = []
    with work_copy(ROOT) as copy:
        runner = Runner(copy, fork=not args.no_fork)
        runner.warm(sorted({test for t in targets for test in t.tests}))
        for target in targets:
            outcomes += _run_target(runner, target, chosen[target.name], args.verbose, unmeasured)
    tallies = _tally(targets, outcomes)
    report = _report(tallies, unmeasured + stale, time.monotonic() - started)
    print(report)
    _save(report, outcomes, unmeasured, args)
    total = sum(t.mutants for t in tallies.values())
    rate = 100.0 * sum(t.killed for t in tallies.values()) / total if total else 100.0
    unexplained = [s for t in tallies.values() for s in t.survivors if not s.explanation]
    return 1 if rate < args.fail_under or unexplained or unmeasured else 0


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--module", action="append", help="a target's name (repeatable); all by default")
    parser.add_argument("--limit", type=int, default=0, help="at most N mutants per module, drawn with --seed")
    parser.add_argument("--seed", type=int, default=0, help="the draw of --limit")
    parser.add_argument("--match", default="", help="only the mutants whose title (#index line N function: label) contains this")
    parser.add_argument("--list", action="store_true", help="list the mutants and the test selections; run nothing")
    parser.add_argument("--fail-under", type=float, default=90.0, help="the kill rate (percent) below which it fails")
    parser.add_argument("--no-fork", action="store_true", help="a fresh interpreter per run (slower; the same outcomes)")
    parser.add_argument("--verbose", action="store_true", help="print the tail of the tests' output of every run")
    return parser.parse_args()


def _stale_explanations(targets: list[Target]) -> list[str]:
    """Explanations of mutants the code no longer has (it changed): to be removed or rewritten."""
    made = {(t.name, m.function, m.label) for t in targets for m in t.mutants(ROOT)[0]}
    names = {t.name for t in targets}
    return [
        f"{k[0]}: an explanation for a mutant no longer made: {k[1]}: {k[2]}"
        for k in EXPLAINED
        if k[0] in names and k not in made
    ]


def _sample(mutants: list[Mutant], limit: int, seed: int) -> list[Mutant]:
    if not limit or limit >= len(mutants):
        return mutants
    return sorted(random.Random(seed).sample(mutants, limit), key=lambda m: m.index)


def _list(targets: list[Target], chosen: dict[str, list[Mutant]], unmeasured: list[str]) -> None:
    for target in targets:
        print(f"{target.name} ({target.path}): {len(chosen[target.name])} mutants; tests: {' '.join(target.tests)}")
        for m in chosen[target.name]:
            print(f"  {_title(m)}")
    for line in unmeasured:
        print(f"UNMATCHED {line}")


def _title(m: Mutant) -> str:
    return f"#{m.index} line {m.line} {m.function}: {m.label}"


def _run_target(runner: Runner, target: Target, mutants: list[Mutant], verbose: bool, broken: list[str]) -> list[Outcome]:
    if not mutants:
        return []
    path = runner.copy / target.path
    original = path.read_text()
    try:
        # The baseline runs the unparsed module: what every mutant differs from by one change.
        path.write_text(target.baseline(runner.copy))
        for _ in range(3):  # a fixture can fail on a busy machine (a server slow to stop): asked again
            baseline = runner.run(target.tests, None, path)
            if baseline.status == "survived":
                break
        else:
            print(f"[{target.name}] the tests fail on the unmutated module:\n{baseline.output[-4000:]}", file=sys.stderr)
            broken.append(f"{target.name}: the tests fail on the unmutated module ({_killer(baseline.output)})")
            return []
        timeout = 3 * baseline.seconds + 30
        print(f"[{target.name}] {len(mutants)} mutants; baseline {baseline.seconds:.1f}s", file=sys.stderr, flush=True)
        outcomes = []
        for n, mutant in enumerate(mutants, 1):
            path.write_text(mutant.source)
            run = runner.run(target.tests, timeout, path)
            if run.status == "timeout" or (run.status == "killed" and _killer(run.output).startswith("ERROR")):
                # Not a test's verdict but its setup's or teardown's (a server slow to stop on a busy
                # machine), or time: asked again, so that a flaky fixture never counts as a kill.
                run = runner.run(target.tests, timeout, path)
            explanation = EXPLAINED.get((target.name, mutant.function, mutant.label), "") if run.status == "survived" else ""
            killer = _killer(run.output) if run.status == "killed" else ""
            outcomes.append(
                Outcome(
                    target.name,
                    mutant.index,
                    mutant.line,
                    mutant.function,
                    mutant.label,
                    run.status,
                    run.seconds,
                    killer,
                    explanation,
                )
            )
            print(
                f"  {n}/{len(mutants)} {run.status:8} {run.seconds:5.1f}s {_title(mutant)}"
                + (f"\n      by {killer}" if killer else ""),
                file=sys.stderr,
                flush=True,
            )
            if verbose:
                print(run.output[-3000:], file=sys.stderr)
        return outcomes
    finally:
        path.write_text(original)
        runner.forget_bytecode(path)


def _killer(output: str) -> str:
    found = [line for line in output.splitlines() if line.startswith(("FAILED tests/", "ERROR tests/"))]
    return found[0][:200] if found else "(no test named: the run ended early)"


def _tally(targets: list[Target], outcomes: list[Outcome]) -> dict[str, Tally]:
    tallies = {t.name: Tally() for t in targets}
    for o in outcomes:
        tally = tallies[o.target]
        tally.mutants += 1
        if o.status == "survived":
            tally.survivors.append(o)
        else:
            tally.killed += 1
    return tallies


def _report(tallies: dict[str, Tally], unmeasured: list[str], seconds: float) -> str:
    paths = {t.name: t.path for t in TARGETS}
    lines = ["| module | file | mutants | killed | survived | kill rate |", "|---|---|---:|---:|---:|---:|"]
    for name, t in tallies.items():
        lines.append(f"| {name} | {paths[name]} | {t.mutants} | {t.killed} | {len(t.survivors)} | {t.rate:.1f} % |")
    mutants, killed = sum(t.mutants for t in tallies.values()), sum(t.killed for t in tallies.values())
    rate = 100.0 * killed / mutants if mutants else 100.0
    lines.append(f"| **all** | | {mutants} | {killed} | {mutants - killed} | {rate:.1f} % |")
    lines.append(f"\n{mutants} mutants in {seconds / 60:.1f} min")
    survivors = [s for t in tallies.values() for s in t.survivors]
    if survivors:
        lines.append("\nSurvivors:")
    for s in survivors:
        why = s.explanation or "NOT EXPLAINED: a test is missing"
        lines.append(f"- {s.target} #{s.index} line {s.line} {s.function}: {s.label}\n  {why}")
    if unmeasured:
        lines.append(
            "\nNot measured (a named mutant whose snippet is gone: update mutation_targets.py; a target whose tests fail):"
        )
        lines += [f"- {u}" for u in unmeasured]
    return "\n".join(lines)


def _save(report: str, outcomes: list[Outcome], unmeasured: list[str], args: argparse.Namespace) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "table.md").write_text(report + "\n")
    record = {"arguments": vars(args), "outcomes": [asdict(o) for o in outcomes], "unmeasured": unmeasured}
    (OUT / "outcomes.json").write_text(json.dumps(record, indent=1))
    print(f"\nwritten: {OUT.relative_to(ROOT)}/table.md, outcomes.json", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
