"""The exit statuses of the ``beexbench`` command (docs/RELIABILITY.md has the table)."""

OK = 0  # every cell of the run is ok (cells a model cannot run on the target are listed, not failed)
CELLS_FAILED = 1  # the run finished, but some cells failed: the summary names them; --resume re-runs only them
USAGE = 2  # bad flags or configuration, an unknown name, a broken plugin: nothing ran
WRITE_REFUSED = 3  # the machine refused a write (disk full, read-only, no permission): finished cells are kept
INTERRUPTED = 130  # Ctrl-C: finished cells are kept; the same command (or --resume RUN) continues
TERMINATED = 143  # SIGTERM (kill, systemd, Slurm, docker stop): stopped as Ctrl-C stops it, 128 + 15 as shells expect
