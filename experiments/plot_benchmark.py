"""Plot a saved benchmark JSON: python -m experiments.plot_benchmark results.json figure.png"""

import json
import sys

from safjax import plots


def main(argv: list[str]) -> None:
    if len(argv) != 3:
        sys.exit("usage: python -m experiments.plot_benchmark RESULTS.json FIGURE.png")
    with open(argv[1]) as f:
        saved = json.load(f)
    env = saved["environment"]
    records = saved["records"]
    title = f"{saved['model']}, batch {records[0]['batch_size']}, unroll {records[0]['unroll']}, {env['device_kind']}"
    plots.benchmark_curves(records, argv[2], title)


if __name__ == "__main__":
    main(sys.argv)
