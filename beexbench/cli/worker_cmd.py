"""``beexbench worker``: start or join a Ray cluster node that measures the given targets.

It runs Ray's own ``ray start`` with the node's resources (docs/CLUSTER.md): one
``beexbench_target_<name>`` per target and one ``beexbench_measure`` slot, so the node takes one
measurement at a time, of its targets only."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._options import split_csv


def ray_command(targets: list[str], address: str | None, num_cpus: int | None, block: bool) -> list[str]:
    """The ``ray start`` command line for a node measuring ``targets``."""
    from ..runner.executors.resources import node_resources

    exe = Path(sys.executable).with_name("ray")  # the ray of this environment (beexbench's Python)
    if not exe.is_file():
        found = shutil.which("ray")
        if not found:
            from ..errors import BeexError
            from ..runner.executors.ray_driver import INSTALL

            raise BeexError(f"Ray is not installed here: {INSTALL}")
        exe = Path(found)
    cmd = [str(exe), "start", *(["--address", address] if address else ["--head"]),
           "--resources", json.dumps(node_resources(targets), sort_keys=True)]
    if num_cpus is not None:
        cmd += ["--num-cpus", str(num_cpus)]
    return cmd + (["--block"] if block else [])


def worker(
    targets: Annotated[str, typer.Option("--targets", help="Comma-separated targets this node measures (see `beexbench list targets`).")],
    address: Annotated[Optional[str], typer.Option("--address", help="The head's HOST:PORT (as `ray start --head` prints it); without it this node starts a new cluster as its head.")] = None,
    num_cpus: Annotated[Optional[int], typer.Option("--num-cpus", help="CPUs this node lends to training (default: all; 0 keeps training off a measuring node).")] = None,
    node_name: Annotated[Optional[str], typer.Option("--node-name", help="A readable name recorded with every cell measured here (default: a hash of the hostname).")] = None,
    block: Annotated[bool, typer.Option("--block", help="Stay in the foreground until the node stops (for Slurm and containers).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the `ray start` command and exit.")] = False,
) -> None:
    """Start (or join, with --address) a Ray node that measures the given targets, one cell at a time.
    Exit status: that of `ray start`; 2 bad input (an unknown target, one not available here)."""
    from ..errors import BeexError
    from ..profilers.environment import NODE_NAME_ENV
    from ..targets import get_target

    names = list(dict.fromkeys(split_csv(targets, flag="--targets") or []))
    if not names:
        raise BeexError("--targets names no target: give at least one, e.g. --targets cpu")
    if num_cpus is not None and num_cpus < 0:
        raise BeexError(f"--num-cpus must be 0 or more, not {num_cpus}")
    for name in names:  # a node must not promise a target it cannot measure
        ok, reason = get_target(name).available()
        if not ok:
            raise BeexError(f"target '{name}' is not available on this machine ({reason}): drop it from --targets")
    cmd = ray_command(names, address, num_cpus, block)
    typer.echo(_shell(cmd), err=True)
    if dry_run:
        return
    env = dict(os.environ)
    if node_name:
        env[NODE_NAME_ENV] = node_name  # ray start's processes, and so its workers, inherit it
    code = _call(cmd, env)
    if code != 0:
        raise typer.Exit(code)


def _call(cmd: list[str], env: dict[str, str], grace_s: float = 30.0) -> int:
    """Run ``ray start`` and return its status. Stopped (Ctrl-C, or SIGTERM, which the CLI turns
    into Ctrl-C) it is given SIGTERM, so that it stops the node's processes itself, and killed only
    if it is still there after ``grace_s``: neither it nor the node outlives this command."""
    proc = subprocess.Popen(cmd, env=env)
    try:
        return proc.wait()
    except BaseException:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        raise


def _shell(cmd: list[str]) -> str:
    import shlex

    return " ".join(shlex.quote(part) for part in cmd)
