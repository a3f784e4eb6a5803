"""Time to build every responder of the five shows plus one chitchat responder (goal: <= 20 s).

    QLEARN_DATA_ROOT=../shared/data python benchmarks/data_build.py [--repeat 3]

Each repeat runs in a fresh interpreter state (the per-process caches of parsed shows and cleaned
chunks are cleared), so the time includes reading and parsing every raw file.
"""
import argparse
import os
import time

from qlearn.data import all_responders, build_dataset
from qlearn.data.pipeline import clear_caches


def one_run() -> tuple[float, dict, float]:
    clear_caches()
    times, start, cpu = {}, time.perf_counter(), time.process_time()
    for source, responder in all_responders():
        t = time.perf_counter()
        ds = build_dataset(source, responder)
        times[f"{source}/{ds.responder}"] = time.perf_counter() - t
    return time.perf_counter() - start, times, time.process_time() - cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    runs = [one_run() for _ in range(args.repeat)]
    best_total, best, best_cpu = min(runs, key=lambda r: r[0])
    print("| responder | seconds (first build of a source includes parsing it) |\n|---|---:|")
    for name, sec in best.items():
        print(f"| {name} | {sec:.2f} |")
    totals = ", ".join(f"{t:.1f}" for t, _, _ in runs)
    print(f"\nall {len(best)} responders: best {best_total:.1f} s wall, {best_cpu:.1f} s CPU "
          f"(wall per run: {totals}); goal <= 20 s -> {'met' if best_total <= 20 else 'NOT met'}")
    print(f"load average during the runs: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          "(other jobs slow the wall time, not the CPU time)")


if __name__ == "__main__":
    main()
