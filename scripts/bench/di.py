"""DI cost beside dependency-injector (the well-known container), same graph, same run: building a
graph of components (constructor injection, three levels) and resolving a singleton at run time.

Usage: .venv/bin/python scripts/bench/di.py [--components 60] [--resolves 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from dependency_injector import containers, providers  # noqa: E402

from common.di import ContextModuleBuilder, og_component, og_context  # noqa: E402


def _classes(n: int) -> list[type]:
    """n component classes; each takes the two made before it (a three-level-deep chain or more)."""
    made: list[type] = []
    for i in range(n):
        deps = made[-2:]
        params = ", ".join(f"d{j}: {d.__name__}" for j, d in enumerate(deps))
        namespace: dict[str, Any] = {f"{d.__name__}": d for d in deps}
        exec(
            f"class C{i}:\n    def __init__(self{', ' if params else ''}{params}) -> None:\n        self.deps = ({', '.join(f'd{j}' for j in range(len(deps)))}{',' if deps else ''})\n",
            namespace,
        )
        made.append(og_component()(namespace[f"C{i}"]))
    return made


async def ours(classes: list[type], resolves: int) -> tuple[float, float]:
    module = og_context(name="bench", providers=classes, exports=[classes[-1]])(type("BenchModule", (), {}))
    started = time.perf_counter()
    contexts = await ContextModuleBuilder().build_contexts(module)
    built = time.perf_counter() - started
    context, last = contexts["bench"], classes[-1]
    started = time.perf_counter()
    for _ in range(resolves):
        context.resolve(last)
    resolved = (time.perf_counter() - started) / resolves
    await contexts.shutdown()
    return built, resolved


def theirs(classes: list[type], resolves: int) -> tuple[float, float]:
    started = time.perf_counter()
    container = containers.DynamicContainer()
    made: list[Any] = []
    for cls in classes:
        provider = providers.Singleton(cls, *made[-2:])
        made.append(provider)
        setattr(container, cls.__name__, provider)
    for provider in made:
        provider()
    built = time.perf_counter() - started
    last = made[-1]
    started = time.perf_counter()
    for _ in range(resolves):
        last()
    return built, (time.perf_counter() - started) / resolves


def measure(components: int, resolves: int) -> dict[str, float]:
    classes = _classes(components)
    our_build, our_resolve = asyncio.run(ours(classes, resolves))
    their_build, their_resolve = theirs(classes, resolves)
    return {
        "ours_build_ms": our_build * 1000,
        "theirs_build_ms": their_build * 1000,
        "ours_resolve_ns": our_resolve * 1e9,
        "theirs_resolve_ns": their_resolve * 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--components", type=int, default=60)
    parser.add_argument("--resolves", type=int, default=200_000)
    args = parser.parse_args()
    m = measure(args.components, args.resolves)
    print(f"{'measure':<34} {'ours':>10} {'dependency-injector':>20} {'ratio':>7}")
    print(
        f"{'build + init all (ms)':<34} {m['ours_build_ms']:>10.2f} {m['theirs_build_ms']:>20.2f} {m['ours_build_ms'] / m['theirs_build_ms']:>6.2f}x"
    )
    print(
        f"{'resolve a singleton (ns)':<34} {m['ours_resolve_ns']:>10.0f} {m['theirs_resolve_ns']:>20.0f} {m['ours_resolve_ns'] / m['theirs_resolve_ns']:>6.2f}x"
    )


if __name__ == "__main__":
    main()
