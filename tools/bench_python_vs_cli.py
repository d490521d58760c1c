"""Is a search from Python as fast as from the command line? Times the same
seeded search (the embedded digits example, or CONFIG) through
`snac_pack.search` in this process and through the `snac` binary, rounds
alternating, and prints the medians and their ratio.

    python tools/bench_python_vs_cli.py [--rounds 3] [--trials 24] [--snac target/release/snac] [CONFIG]
"""

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import snac_pack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--snac", default=str(Path(__file__).resolve().parents[1] / "target/release/snac"))
    args = parser.parse_args()
    times = {"python": [], "cli": []}
    common = ["--trials", str(args.trials), "--workers", str(args.workers), "--seed", "1"]
    for round_ in range(args.rounds):
        for way in ("python", "cli") if round_ % 2 == 0 else ("cli", "python"):
            out = Path(tempfile.mkdtemp(prefix=f"bench-{way}-"))
            start = time.perf_counter()
            if way == "python":
                snac_pack.search(args.config, trials=args.trials, workers=args.workers, seed=1,
                                 results_dir=out, progress=False)
            else:
                cmd = [args.snac, "-q", "search", *([args.config] if args.config else []), *common,
                       "--results-dir", str(out)]
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            times[way].append(time.perf_counter() - start)
            shutil.rmtree(out)
    for way, values in times.items():
        print(f"{way:>6}: median {statistics.median(values):.3f} s over {len(values)} runs "
              f"(min {min(values):.3f}, max {max(values):.3f})")
    ratio = statistics.median(times["python"]) / statistics.median(times["cli"])
    print(f"python / cli wall time: {ratio:.3f}")


if __name__ == "__main__":
    main()
