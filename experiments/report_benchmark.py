"""Report a saved benchmark JSON as a Markdown table and, optionally, a figure.

    python -m experiments.report_benchmark results.json [figure.png]
"""

import json
import sys

from safjax import benchmark


def main(argv: list[str]) -> None:
    if len(argv) not in (2, 3):
        sys.exit("usage: python -m experiments.report_benchmark RESULTS.json [FIGURE.png]")
    with open(argv[1]) as f:
        saved = json.load(f)
    env, records = saved["environment"], saved["records"]
    print(f"{saved['model']} on {saved['dataset']} shapes, {env['device_count']}× {env['device_kind']}, "
          f"jax {env['jax']}\n")
    print(benchmark.markdown_table(records))
    if len(argv) == 3:
        from safjax import plots

        title = (f"{saved['model']}, batch {records[0]['batch_size']}, unroll {records[0]['unroll']}, "
                 f"{env['device_kind']}")
        plots.benchmark_curves(records, argv[2], title)


if __name__ == "__main__":
    main(sys.argv)
