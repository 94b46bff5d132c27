"""Test-only fault injection for tests/test_reliability.py.

Python imports `sitecustomize` at start-up from the first folder on sys.path that has one;
the reliability tests put this folder first on PYTHONPATH of the snakemake they start, so
its training jobs (`python -m whatmatters train`) load it. It is never on a user's path,
and does nothing unless WHATMATTERS_TEST_FAULT is set:

  crash:<after>:<pidfile>:<marker>
                                 once <after> run records of a job are stored, SIGKILL the
                                 process whose id is in <pidfile> (snakemake), all its
                                 descendants and this process: a machine or session dying
                                 mid-job. Once: the <marker> file, made first, disarms it.
  kill:<after>:<marker>          the same, SIGKILL of this training process only.
  raise:<run_id>:<log>           raise RuntimeError instead of storing run <run_id>, on every
                                 attempt; each attempt appends a line to <log>.

The hook wraps the `write_json` that whatmatters.jobs stores run records with.
"""

import importlib.abc
import os
import signal
import sys
from pathlib import Path

FAULT = os.environ.get("WHATMATTERS_TEST_FAULT", "")


def _kill_all(pid: int) -> None:
    import psutil

    try:
        victims = psutil.Process(pid).children(recursive=True) + [psutil.Process(pid)]
    except psutil.NoSuchProcess:
        victims = []
    for p in victims:
        if p.pid != os.getpid():
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass


def _install(jobs) -> None:
    mode, *args = FAULT.split(":")
    store = jobs.write_json
    stored = 0

    def write_json(path, obj):
        nonlocal stored
        is_run = isinstance(obj, dict) and "run_id" in obj and Path(path).parent.name != "jobs"
        if is_run and mode == "raise" and obj["run_id"] == args[0]:
            with open(args[1], "a") as log:
                log.write(f"attempt at run {obj['run_id']}\n")
            raise RuntimeError(f"injected fault: run {obj['run_id']} raises")
        store(path, obj)
        if is_run and mode in ("crash", "kill"):
            stored += 1
            marker = Path(args[-1])
            if stored >= int(args[0]) and not marker.exists():
                marker.write_text(f"killed after {stored} runs, last {obj['run_id']}\n")
                if mode == "crash":
                    _kill_all(int(Path(args[1]).read_text()))
                os.kill(os.getpid(), signal.SIGKILL)

    jobs.write_json = write_json


class _Hook(importlib.abc.MetaPathFinder):
    """Patches whatmatters.jobs right after it is imported."""

    def find_spec(self, name, path, target=None):
        if name != "whatmatters.jobs":
            return None
        for finder in sys.meta_path:
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    break
        else:
            return None
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _install(module)

        spec.loader.exec_module = exec_and_patch
        return spec


if FAULT:
    sys.meta_path.insert(0, _Hook())
