"""What a model is in a benchmark: declared by its adapter (``ModelAdapter.role``), written into
every result record (``model.role``), read by the report. Plain Python (no torch), so the
report can read roles without loading any model.

========================== ===============================================================
``subject``                the model under study (beexformer)
``ablation of X``          a variant of subject X, compared with it in the ablation table
``deployment of X``        X's trained network run another way (packed): summary only
``baseline``               a rival (the default for any model that declares nothing)
``full-precision reference`` what the summary's compression ratios are measured against (fp32)
``reference floor``        a reference line (majority, bow-linear), never a Pareto candidate
========================== ===============================================================
"""
from __future__ import annotations

from dataclasses import dataclass

KINDS = ("subject", "ablation", "deployment", "baseline", "full-precision reference", "reference floor")
_RELATIVE = ("ablation", "deployment")  # roles that name the model they are of


@dataclass(frozen=True)
class Role:
    kind: str
    of: str | None = None  # the model an ablation or a deployment is of

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown model role {self.kind!r}: use one of {', '.join(KINDS)}")
        if (self.kind in _RELATIVE) != bool(self.of):
            raise ValueError(f"role {self.kind!r} {'needs' if self.kind in _RELATIVE else 'takes no'} the model it is of")

    def __str__(self) -> str:
        """As written in result records: ``"baseline"``, ``"ablation of beexformer"``."""
        return f"{self.kind} of {self.of}" if self.of else self.kind

    @classmethod
    def parse(cls, text: str) -> "Role":
        """The role a record states (``str(role)``); ValueError for anything else."""
        for kind in _RELATIVE:
            if text.startswith(f"{kind} of "):
                return cls(kind, text[len(kind) + 4:])
        return cls(text)


SUBJECT = Role("subject")
BASELINE = Role("baseline")
FULL_PRECISION_REFERENCE = Role("full-precision reference")
REFERENCE_FLOOR = Role("reference floor")


def ablation_of(model: str) -> Role:
    return Role("ablation", model)


def deployment_of(model: str) -> Role:
    return Role("deployment", model)


def legacy_role(model: str, recorded: str | None) -> Role:
    """The role of a record written before models declared one (result schema 2 records whose
    ``model.role`` is ``"model"`` or absent): the built-in models' names at the time decided it.
    Used only for such records; a record that states a role is taken at its word."""
    if recorded == str(REFERENCE_FLOOR):
        return REFERENCE_FLOOR
    if model == "beexformer":
        return SUBJECT
    if model == "beexformer-packed":
        return deployment_of("beexformer")
    if model.startswith("beexformer-"):
        return ablation_of("beexformer")
    return FULL_PRECISION_REFERENCE if model == "fp32" else BASELINE


def recorded_role(model: str, recorded: str | None) -> Role:
    """The role of a result record: the one it states, :func:`legacy_role` for records written
    before roles were declared, a baseline for a role this version does not know."""
    if recorded in (None, "", "model"):
        return legacy_role(model, recorded)
    try:
        return Role.parse(recorded)
    except ValueError:
        return BASELINE
