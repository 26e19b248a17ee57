"""Speed of mmkp's heads (targets, losses, decoding) against mmdet's, measured in the same run.

    python tools/analysis_tools/benchmark_heads.py [--only cornernet fcos ...] [--device cpu|cuda]
                                                   [--repeats N] [--json PATH]

Each detector family has a module in ``tools/analysis_tools/head_benchmarks/`` with a ``run(args)`` function that
returns records ``{"name", "shape", "mmkp_s", "baseline_s", "speedup"}`` (names start with the family, e.g.
``cornernet/targets``); this script prints them as one table and writes them with ``--json``.
"""
import argparse
import importlib
import os.path as osp
import pkgutil
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

import torch  # noqa: E402

from mmkp.utils.benchmark import format_table, write_json  # noqa: E402

FAMILIES = sorted(m.name for m in pkgutil.iter_modules([osp.join(osp.dirname(osp.abspath(__file__)),
                                                                 'head_benchmarks')]))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--only', nargs='+', choices=FAMILIES, default=FAMILIES, help='families to run')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--repeats', type=int, default=10, help='timed repeats (median reported)')
    parser.add_argument('--json', help='write the records to this JSON file')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.device == 'cuda' and not torch.cuda.is_available():
        sys.exit('--device cuda: no CUDA device is available')
    import mmkp  # noqa: F401  (registers mmkp modules)
    records = []
    for family in args.only:
        module = importlib.import_module(f'head_benchmarks.{family}')
        print(f'== {family} ({args.device}, {torch.get_num_threads()} threads)', flush=True)
        records.extend(module.run(args))
    print(format_table(records))
    if args.json:
        write_json(records, args.json)
        print(f'wrote {len(records)} records to {args.json}')


if __name__ == '__main__':
    main()
