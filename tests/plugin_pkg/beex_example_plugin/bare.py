"""An example plugin on the bare ``ModelAdapter`` (not ``EncoderAdapter``): its own network, its
own wiring of the library's training loop, and everything the runner, the profilers and the
report need declared through the adapter contract - its settings are a ModelSpec (so it gets
the suite's [model] settings and the seed), its exit layout and rule, and its role."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from torch import nn

from beexbench.adapters.base import ExitLayout, FitReport, ModelAdapter, Precision, TaskSpec
from beexbench.adapters.checkpoint import read_checkpoint, write_checkpoint
from beexbench.adapters.encoder_adapter import module_precision
from beexbench.adapters.roles import ablation_of
from beexbench.adapters.spec import ModelSpec, make_rule
from beexbench.errors import BeexError
from beexbench.models.encoder import all_exits, early_exit_infer
from beexbench.models.exits import ExitDecision, ExitRule
from beexbench.models.losses import exit_loss
from beexbench.training.calibrate import all_exit_logits, choose, sweep
from beexbench.training.loop import train
from beexbench.training.metrics import metric_of, score


class ResidualMLPEncoder(nn.Module):
    """Token + position embeddings, ``n_blocks`` residual GELU MLP blocks over the token states,
    a masked-mean-pool linear exit head after every block."""

    def __init__(self, vocab_size: int, max_len: int, num_labels: int, d_model: int, n_blocks: int) -> None:
        super().__init__()
        self.max_len, self.num_labels = max_len, num_labels
        self.tok = nn.Embedding(vocab_size, d_model, padding_idx=0)
        self.pos = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(_Block(d_model) for _ in range(n_blocks))
        self.heads = nn.ModuleList(_Head(d_model, num_labels) for _ in range(n_blocks))

    @property
    def exit_blocks(self) -> list[int]:
        return list(range(1, len(self.blocks) + 1))

    def head_for(self, block: int) -> nn.Module:
        return self.heads[block - 1]

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        return all_exits(self, ids, mask)


class _Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return h + nn.functional.gelu(self.lin(h))


class _Head(nn.Module):
    def __init__(self, d: int, num_labels: int) -> None:
        super().__init__()
        self.out = nn.Linear(d, num_labels)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(h.dtype)
        return self.out((h * m).sum(1) / m.sum(1).clamp_min(1.0))


class ResidualMLPExits(ModelAdapter):
    """Example plugin (bare ModelAdapter): residual fp32 MLP blocks, an exit after each, entropy threshold calibrated on val."""

    role = ablation_of("beexformer")  # compared with beexformer in the report's ablation table
    # only what differs from the ModelSpec field defaults; it reads encoder.d_model and n_blocks
    defaults = {
        "encoder": {"weight_bits": 32, "act_bits": 32, "ffn": "gelu"},
        "train": {"lr": 3e-3},
        "loss": {"kind": "uniform"},
        "exit": {"rule": "absolute-entropy", "threshold": 0.3, "min_exit": 1},
        "calibration": {"param": "threshold", "grid": [0.0, 0.1, 0.3, 0.6]},
    }

    def __init__(self, settings: ModelSpec, spec: TaskSpec) -> None:
        self.model_spec, self.spec, self.fit_report = settings, spec, None
        self.rule = make_rule(settings.exit, spec.problem)
        self.net = ResidualMLPEncoder(spec.vocab_size, spec.max_len, spec.num_labels,
                                      settings.encoder.d_model, settings.encoder.n_blocks).eval()

    @property
    def config(self) -> dict:
        return self.model_spec.to_dict()

    @classmethod
    def build(cls, config, spec: TaskSpec) -> "ResidualMLPExits":
        return cls(cls.resolve_spec(config, spec.problem), spec)

    def fit(self, train_split, val, progress=None, cost_fn=None) -> FitReport:
        loss = self.model_spec.loss

        def loss_fn(logits, labels):
            return exit_loss(loss.kind, logits, labels, delta=loss.delta, tau=loss.tau, floor=loss.floor,
                             min_exit=loss.min_exit)

        log = train(self.net, loss_fn, train_split, val, self.model_spec.train, description=f"train {self.name}")
        cal = self.model_spec.calibration
        logits = all_exit_logits(self.net, val)
        rows = sweep(self.rule_variants(cal.param, list(cal.grid)), logits, val.labels, val.attention_mask.sum(1),
                     cost_fn, self.net.exit_blocks)
        problem = self.spec.problem  # the task's declared problem decides the score and its name
        best = choose(rows, score(logits[-1], val.labels, problem), cal.tolerance, metric_of(problem))
        self.model_spec = self.model_spec.merged({"exit": {cal.param: cal.grid[best]}})
        self.rule = make_rule(self.model_spec.exit, self.spec.problem)
        calibration = {"split": "val", "param": cal.param, "metric": metric_of(problem), "chosen": cal.grid[best],
                       "sweep": rows}
        self.fit_report = FitReport(**log, calibration=calibration)
        return self.fit_report

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        return self.net(input_ids, attention_mask)

    def predict(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> ExitDecision:
        return early_exit_infer(self.net, input_ids, attention_mask, self.rule)

    def module(self) -> nn.Module:
        return self.net

    def precision(self) -> Precision:
        return module_precision(self.net)

    # what the runner's exit measurements read
    def exit_layout(self) -> ExitLayout:
        return ExitLayout.of_encoder(self.net)

    def exit_rule(self) -> ExitRule:
        return self.rule

    def rule_variants(self, param: str, values: list) -> list[ExitRule]:
        return [make_rule(dataclasses.replace(self.model_spec.exit, **{param: v}), self.spec.problem) for v in values]

    def save(self, directory: Path) -> Path:
        meta = {"config": self.config, "task": self.spec.to_dict(),
                "fit": self.fit_report.to_dict() if self.fit_report else None}
        return write_checkpoint(Path(directory), self.name, self.net.state_dict(), json.loads(json.dumps(meta)))

    @classmethod
    def load(cls, directory: Path) -> "ResidualMLPExits":
        tensors, doc = read_checkpoint(Path(directory), cls.name)
        try:
            adapter = cls(ModelSpec.from_dict(doc["config"]), TaskSpec(**doc["task"]))
            adapter.net.load_state_dict(tensors, strict=True)
        except (KeyError, TypeError, RuntimeError, BeexError) as exc:
            raise BeexError(f"checkpoint {directory} does not match model '{cls.name}' ({str(exc).splitlines()[0]})") from None
        adapter.fit_report = FitReport.from_dict(doc.get("fit"))
        return adapter
