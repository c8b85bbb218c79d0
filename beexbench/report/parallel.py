"""Build the report's sections in worker processes (figures are the slow part: about a second of
matplotlib per figure), reporting progress through :mod:`beexbench.progress`."""
from __future__ import annotations

import math
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from ..errors import BeexError
from ..progress import NULL_PROGRESS, Progress
from .sections import Section, SectionJob, build_sections

MAX_JOBS = 64
# below this much work a pool's start-up (a fresh interpreter importing pandas and matplotlib) costs more than it saves
MIN_FIGURE_SECTIONS, MIN_TABLE_SECTIONS = 4, 100


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_jobs(jobs: int | None) -> None:
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= MAX_JOBS):
        raise BeexError(f"--jobs {jobs!r}: must be a whole number from 1 to {MAX_JOBS} (default: the usable cores)")


def choose_workers(jobs: list[SectionJob], requested: int | None) -> int:
    """``requested`` (capped by the work), else the usable cores when the work is worth a pool, else 1."""
    n_fig = sum(j.figures for j in jobs)
    if requested is None:
        if n_fig < MIN_FIGURE_SECTIONS and len(jobs) - n_fig < MIN_TABLE_SECTIONS:
            return 1
        requested = usable_cores()
    return max(1, min(requested, len(jobs)))


def plan(jobs: list[SectionJob], workers: int) -> list[list[SectionJob]]:
    """Chunks, the expensive first: one section with figures per chunk, the table-only sections
    in chunks small enough to keep every worker busy to the end and the progress bar moving."""
    figs = [[j] for j in jobs if j.figures]
    rest = [j for j in jobs if not j.figures]
    size = max(1, min(50, math.ceil(len(rest) / (workers * 8)))) if rest else 1
    return figs + [rest[i:i + size] for i in range(0, len(rest), size)]


def _context():
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:  # fork would copy a threaded parent; forkserver imports once, then forks cheaply
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["beexbench.report.sections"])
        return ctx
    return multiprocessing.get_context("spawn")


def run_sections(jobs: list[SectionJob], workers: int, progress: Progress = NULL_PROGRESS) -> list[Section]:
    """Every section, in ``index`` order; ``workers`` processes (1: in this process)."""
    chunks = plan(jobs, workers)
    n_fig = sum(j.figures for j in jobs)
    label = f"report: {len(jobs)} section(s), {n_fig} with figures"
    out: list[Section] = []
    with progress.task(label, total=len(jobs)) as bar:
        if workers <= 1:
            for chunk in chunks:
                out += build_sections(chunk)
                bar.advance(len(chunk))
        else:
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=_context())
            try:
                pending = {pool.submit(build_sections, chunk): len(chunk) for chunk in chunks}
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        out += fut.result()
                        bar.advance(pending.pop(fut))
            except BrokenProcessPool:
                raise BeexError("a report worker process stopped before it finished (out of memory, or a script that calls "
                                "build_report without `if __name__ == \"__main__\":`): rerun with --jobs 1 (jobs=1), "
                                "or fewer figures (--figures-for N)") from None
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    return sorted(out, key=lambda s: s.index)
