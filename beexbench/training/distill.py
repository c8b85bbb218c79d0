"""Knowledge distillation from a trained teacher (the ``distill`` section of a ModelSpec).

BiBERT, BiT and BinaryBERT binarize a fine-tuned full-precision BERT and distil it into the
binary student: the student's logits learn the teacher's softened distribution (KL at a
temperature T, scaled by T^2 so its gradient does not shrink with T), and optionally its hidden
states learn the teacher's after every block. Here every exit of an early-exit student learns
from the teacher's exit after the same block (a teacher with exits on every block, such as
fp32), or from the teacher's last exit when the teacher has one. Attention-map distillation
(BiBERT's direction-matching, BiT's attention loss) is not implemented.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import BeexError
from .batches import Batch


class Distiller:
    """``distiller(student_exit_logits, batch)``: the distillation terms for one training batch.
    Use as a context manager: the hidden-state hooks are removed on exit."""

    def __init__(self, teacher: nn.Module, student: nn.Module, *, logits: float, hidden: float,
                 temperature: float, regression: bool) -> None:
        self.teacher, self.student = teacher, student
        self.w_logits, self.w_hidden, self.t, self.regression = logits, hidden, temperature, regression
        self.teacher.eval()  # no dropout in the teacher: its targets are what it deploys
        self._hooks: list = []
        self._hidden: dict[str, list[torch.Tensor]] = {"teacher": [], "student": []}
        if hidden > 0:
            shapes = [(len(m.blocks), m.cfg.d_model) for m in (teacher, student)]
            if shapes[0] != shapes[1]:
                raise BeexError(f"hidden-state distillation needs a teacher as deep and wide as the student "
                                f"(teacher {shapes[0][0]} blocks x {shapes[0][1]}, student {shapes[1][0]} x {shapes[1][1]}): "
                                "set model.distill.hidden = 0")
            for who, model in (("teacher", teacher), ("student", student)):
                for block in model.blocks:
                    self._hooks.append(block.register_forward_hook(
                        lambda m, _i, out, who=who: self._keep(who, m, out)))

    def _keep(self, who: str, block: nn.Module, out: torch.Tensor) -> None:
        # the student's blocks also run in evaluation (epoch selection, calibration): only its
        # training forwards are distilled; the teacher runs in eval mode, only inside __call__
        if who == "teacher" or block.training:
            self._hidden[who].append(out)

    def __enter__(self) -> "Distiller":
        return self

    def __exit__(self, *exc) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    def __call__(self, student_logits: list[torch.Tensor], batch: Batch) -> torch.Tensor:
        student_hidden, self._hidden["student"] = self._hidden["student"], []
        with torch.no_grad():
            self._hidden["teacher"] = []
            teacher_logits = self.teacher(batch.input_ids, batch.attention_mask)
        teacher_hidden, self._hidden["teacher"] = self._hidden["teacher"], []
        loss = student_logits[-1].new_zeros(())
        if self.w_logits > 0:
            same = len(teacher_logits) == len(student_logits)
            terms = [self._logit_term(s, teacher_logits[i] if same else teacher_logits[-1])
                     for i, s in enumerate(student_logits)]
            loss = loss + self.w_logits * torch.stack(terms).mean()
        if self.w_hidden > 0:
            keep = batch.attention_mask.unsqueeze(-1).to(student_logits[-1].dtype)
            n = keep.sum().clamp_min(1.0) * student_hidden[0].shape[-1]
            terms = [(((s - t) * keep) ** 2).sum() / n for s, t in zip(student_hidden, teacher_hidden)]
            loss = loss + self.w_hidden * torch.stack(terms).mean()
        return loss

    def _logit_term(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if self.regression:
            return F.mse_loss(student, teacher)
        t = self.t
        return F.kl_div(F.log_softmax(student / t, -1), F.log_softmax(teacher / t, -1),
                        reduction="batchmean", log_target=True) * (t * t)
