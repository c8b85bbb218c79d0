"""The shared base of the reference floors (``majority``, ``bow-linear``): one output head, no
exits, no gradient training, settings of their own, role ``reference floor``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import torch

from beexbench.adapters.base import FitReport, ModelAdapter, Precision, TaskSpec
from beexbench.adapters.checkpoint import read_checkpoint, write_checkpoint
from beexbench.adapters.roles import REFERENCE_FLOOR
from beexbench.errors import BeexError
from beexbench.models.exits import ExitDecision
from beexbench.training.config import merge

# logit of a class the train split never showed (finite, so entropies stay defined)
ABSENT_LOGIT = -1e4


def _sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


class _Floor(ModelAdapter):
    """Shared parts of the two floors: one output head, no exits, no gradient training."""

    problems = ("classification", "regression")
    fit_by_gradient = False
    role = REFERENCE_FLOOR
    training_note = "reference floor, fitted with scikit-learn on the task's train split (settings chosen on val)"
    uses_model_spec = False  # settings of its own (below): no suite [model] settings, no seed (deterministic fit)
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: dict[str, Any], spec: TaskSpec) -> None:
        self.config = config
        self.spec = spec
        self.fit_report = None

    @classmethod
    def build(cls, config: dict[str, Any], spec: TaskSpec) -> "_Floor":
        reason = cls.problem_refusal(spec.problem)
        if reason:
            raise BeexError(reason)
        return cls(merge(cls.defaults, config or {}, where=cls.name or cls.__name__), spec)

    @property
    def regression(self) -> bool:
        return self.spec.problem == "regression"

    @property
    def n_out(self) -> int:
        return 1 if self.regression else self.spec.num_labels

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        return [self.module()(input_ids, attention_mask.bool())]

    @torch.no_grad()
    def predict(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> ExitDecision:
        logits = self.forward(input_ids, attention_mask)[0]
        return ExitDecision(logits, torch.ones(logits.shape[0], dtype=torch.long, device=logits.device))

    def _meta(self) -> dict:
        return {"config": self.config, "task": self.spec.to_dict(),
                "fit": self.fit_report.to_dict() if self.fit_report else None, "sklearn_version": _sklearn_version()}

    def save(self, directory: Path) -> Path:
        return write_checkpoint(Path(directory), self.name, self.module().state_dict(), json.loads(json.dumps(self._meta())))

    @classmethod
    def _restore(cls, directory: Path, make) -> "_Floor":
        tensors, doc = read_checkpoint(Path(directory), cls.name)
        try:
            adapter = cls(doc["config"], TaskSpec(**doc["task"]))
            make(adapter, doc, tensors)
            adapter.module().load_state_dict(tensors, strict=True)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise BeexError(f"checkpoint {directory} does not match model '{cls.name}' ({str(exc).splitlines()[0]}): retrain it") from None
        adapter.fit_report = FitReport.from_dict(doc.get("fit"))
        adapter.module().eval()
        return adapter

    def precision(self) -> Precision:
        module = self.module()
        params = {n: 32 for n, _ in module.named_parameters()}
        notes = []
        for n, b in module.named_buffers():
            params[n] = b.element_size() * 8
            if not b.is_floating_point():
                notes.append(f"{self.name}: {n} is a {b.dtype} table, counted at its {params[n]} bits per entry")
        products = {name: (32, 32) for name in self.product_modules()}
        return Precision(params, products, tuple(notes))

    def product_modules(self) -> tuple[str, ...]:
        return ()
