"""User-facing errors: one line that says what went wrong and what to do."""


class BeexError(Exception):
    """An error caused by input or environment that the user can fix.

    The CLI prints ``str(error)`` as a single line and exits with status 2;
    library users catch it like any exception.
    """


class UnknownNameError(BeexError, KeyError):
    """A model, task, target or suite name that no registry knows."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ConfigError(BeexError):
    """Every problem found in a run's configuration before any work, one line each.

    ``str()`` joins them with newlines; the CLI prints each as its own ``error:`` line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class TrainingDiverged(RuntimeError):
    """Training produced a non-finite loss or non-finite weights. Not a :class:`BeexError`:
    it fails its own cell (and nothing is cached), the run's other cells go on."""
