"""Timing helpers shared by the benchmark scripts of ``tools/analysis_tools`` (ARCHITECTURE.md section 6).

Every script times mmkp and its baseline in the same process, prints a table with the speed-up, and with
``--json PATH`` writes a list of records ``{"name", "shape", "mmkp_s", "baseline_s", "speedup"}`` (seconds are
medians; ``speedup = baseline_s / mmkp_s``).
"""
import json
import statistics
import time
from collections import defaultdict
from typing import Callable, Dict, List, Optional, Sequence

import torch


def _sync(device: Optional[str]) -> None:
    if device is not None and str(device).startswith('cuda'):
        torch.cuda.synchronize()


def median_time(fn: Callable[[], object], repeats: int = 10, warmup: int = 2, device: Optional[str] = None,
                min_time: float = 0.0) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs after ``warmup`` runs.

    Args:
        fn (callable): the work to time; its result is discarded.
        repeats (int): timed runs (at least this many). Defaults to 10.
        warmup (int): untimed runs first. Defaults to 2.
        device (str, optional): ``'cuda...'`` synchronises around each run. Defaults to None.
        min_time (float): keep repeating until this many seconds were timed in all. Defaults to 0.

    Returns:
        float: the median in seconds.
    """
    for _ in range(warmup):
        fn()
    _sync(device)
    times: List[float] = []
    total = 0.0
    while len(times) < repeats or total < min_time:
        start = time.perf_counter()
        fn()
        _sync(device)
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        total += elapsed
    return statistics.median(times)


class PartTimer:
    """Accumulates the wall time of wrapped methods per part (network, decoding, ...) of a whole prediction.

    A timed call made inside another timed call is not counted twice (the outer part gets the time). Used by
    ``tools/analysis_tools/benchmark.py`` (one detector's phases) and ``benchmark_saccade.py`` (the parts of the
    saccade test).

    Args:
        device (str): ``'cuda...'`` synchronises before and after every timed call, so that a part's time holds its
            kernels.

    Attributes:
        seconds (dict[str, float]): seconds per part since the last :meth:`reset` (0 for a part never called).
        calls (dict[str, int]): calls per part (or what the ``count`` of :meth:`wrap` adds).
    """

    def __init__(self, device: str) -> None:
        self.device = str(device)
        self.seconds: Dict[str, float] = defaultdict(float)
        self.calls: Dict[str, int] = defaultdict(int)
        self._depth = 0

    def sync(self) -> None:
        """Wait for the device's queued work (CUDA only)."""
        _sync(self.device)

    def wrap(self, obj, name: str, part: str, count: Optional[Callable] = None) -> None:
        """Replace the method ``obj.name`` (on the instance) by a version timed into ``part``.

        Args:
            obj: the object whose attribute is replaced.
            name (str): the method's name.
            part (str): where its time goes.
            count (callable, optional): ``count(args)`` is added to ``calls[part]`` per call. Defaults to 1.
        """
        fn = getattr(obj, name)

        def timed(*args, **kwargs):
            if self._depth:
                return fn(*args, **kwargs)
            self._depth += 1
            self.sync()
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.sync()
                self.seconds[part] += time.perf_counter() - start
                self.calls[part] += count(args) if count else 1
                self._depth -= 1

        setattr(obj, name, timed)

    def reset(self) -> None:
        """Forget the times and counts."""
        self.seconds.clear()
        self.calls.clear()


def make_record(name: str, shape: str, mmkp_s: float, baseline_s: float) -> Dict[str, object]:
    """One JSON record; ``speedup = baseline_s / mmkp_s``."""
    return dict(name=name, shape=shape, mmkp_s=mmkp_s, baseline_s=baseline_s, speedup=baseline_s / mmkp_s)


def format_table(records: Sequence[Dict[str, object]], extra: Optional[Dict[str, str]] = None) -> str:
    """A fixed-width table of records (times in ms), optional extra column per record name."""
    header = f'{"name":<34} {"shape":<28} {"mmkp ms":>10} {"baseline ms":>12} {"speedup":>8}'
    if extra:
        header += '  note'
    lines = [header, '-' * len(header)]
    for r in records:
        line = (f'{r["name"]:<34} {r["shape"]:<28} {1e3 * r["mmkp_s"]:>10.3f} {1e3 * r["baseline_s"]:>12.3f} '
                f'{r["speedup"]:>7.2f}x')
        if extra and r['name'] in extra:
            line += '  ' + extra[r['name']]
        lines.append(line)
    return '\n'.join(lines)


def write_json(records: Sequence[Dict[str, object]], path: str) -> None:
    """Write the records as a JSON list to ``path``."""
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(list(records), f, indent=2)
