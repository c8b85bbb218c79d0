"""``beexformer-packed``: the trained BEExformer run by the packed-bit engine.

A derived deployment of beexformer (``role``): the runner trains (or reuses) the ``beexformer``
checkpoint and calls :meth:`PackedBEExformer.derive`, which packs that network and keeps its
calibrated exit rule (nothing is re-calibrated: the engine computes the float model's logits).
Its settings are beexformer's registered :class:`~beexbench.adapters.spec.ModelSpec`
(``default_spec``, :class:`~beexbench.adapters.protocols.Deployment`: looked up by ``derived_from``;
it holds the beexformer adapter it packed in ``source`` and does not inherit from beexformer),
so a suite's encoder settings key its checkpoint like
every model built on the shared encoder; its module is the inference-only
:class:`~beexbench.engine.packed.PackedEncoder`, never a trainable network.

The token embedding's format is a setting of the deployment, the class attribute
``embedding_bits`` (None: 1-bit rows for a network trained with A5, where they are exactly its
table, int8 rows otherwise). A different choice is a different registered name (the model name
is part of the checkpoint's identity in the store), the file's header records it, loading
checks it, and ``precision()`` declares it (bits and notes, so the result record states it):
:class:`PackedBEExformerInt4` (int4 rows) and :class:`PackedBEExformerA5` (the A5 ablation,
1-bit rows) are the variants.

beexformer itself (the float training model) keeps its fp32 training checkpoint as its files;
its deployable artifact is this one.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from .. import kernels, settings
from ..adapters.base import FitReport, ModelAdapter, Precision, TaskSpec
from ..adapters.encoder_adapter import SpecEncoderBase
from ..adapters.protocols import Deployment
from ..adapters.roles import deployment_of
from ..adapters.spec import ModelSpec
from ..errors import BeexError, ConfigError
from ..adapters.beexformer import BEExformer
from ..progress import NULL_PROGRESS, Progress
from ..results.implementation import Implementation, settle
from ..training.batches import EncodedSplit
from ..training.calibrate import CostFn
from .embedding import EMBEDDING_NAMES
from .packed import (FloatMatMul, PackedEncoder, PackedLinear, PackedQK, check_config, embedding_bits_for, pack_encoder,
                     read_packed, write_packed)


FIT_FILE = "fit.json"  # training and calibration provenance, beside the deployable files


FAST_PATH = "the native C++ engine on the native packed-bit kernels"


def implementation(name: str, model: PackedEncoder, rule) -> Implementation:
    """What runs ``model``'s predictions under ``rule`` in this process (loading the native code on
    first use): the whole-model C++ op or the per-block steps, on the native kernels, is the fast
    path; the Python module path is a fallback, which fails the cell with the reason unless the
    user forced it (``BEEXBENCH_ENGINE=python``, ``BEEXBENCH_KERNELS=fallback``) or allowed it
    (``BEEXBENCH_ALLOW_FALLBACK=1``). See :mod:`beexbench.results.implementation`."""
    from . import _fused, _native

    ops = _native.ops()
    backend = kernels.backend()
    if ops is not None:
        whole = (_fused._rule_args(rule) is not None and _native.engine_choice() != "steps"
                 and _fused.whole_tensors(model) is not None)
        return settle(name, fast_path=FAST_PATH, engine="native" if whole else "steps", isa=str(ops.engine_isa("")),
                      kernels=backend, reason=None)
    forced = None
    if _native.engine_choice() == "python":
        forced = f"{_native.ENV_VAR}=python"
    elif settings.kernels_choice() == "fallback":
        forced = f"{settings.KERNELS}={os.environ.get(settings.KERNELS, '').strip()}"
    return settle(name, fast_path=FAST_PATH, engine="python", isa=None, kernels=backend,
                  reason=_native.unavailable_reason(), forced_by=forced)


def kernel_note() -> str:
    name = kernels.backend()
    if name == kernels.FALLBACK:
        return f"packed kernels: {name} (slower; {kernels.fallback_reason()})"
    return f"packed kernels: {name}"


class PackedBEExformer(Deployment, SpecEncoderBase):  # the engine has the float encoder's interface
    """The trained beexformer deployed with the packed-bit engine: 1-bit weights packed 64 to a
    word, XNOR-popcount products for every W1A1 Linear and for Q.K^T, int8 token embedding rows
    with an fp16 scale per row (1-bit rows with an fp32 scale for a network trained with A5), fp32 position
    embedding, LayerNorms, softmax, A.V and exit heads; its calibrated exit rule. CPU only."""

    name = "beexformer-packed"

    derived_from = "beexformer"
    role = deployment_of("beexformer")
    devices = ("cpu",)
    problems = BEExformer.problems
    # the token rows' format: None = 1 bit with A5 (lossless), else 8; or 32, 8, 4 (1 needs A5)
    embedding_bits: ClassVar[int | None] = None

    def __init__(self, settings: ModelSpec, spec: TaskSpec, engine: PackedEncoder | None = None) -> None:
        """``engine``: the packed network (``source`` is set by who made it); None: a fresh model, a
        freshly initialised source network (held in ``source``) packed."""
        self._take_settings(settings, spec)
        enc = self.model_spec.encoder.to_dict()
        check_config(enc)
        bits = embedding_bits_for(enc, self.embedding_bits)
        self.source: ModelAdapter | None = None
        if engine is None:  # a fresh model: pack a freshly initialised beexformer network
            self.source = self.source_class()(self.model_spec, spec)
            engine = self._pack(self.source)
        if engine.embedding_bits != bits:
            raise BeexError(f"{self.name} deploys {bits}-bit token rows; this engine has {engine.embedding_bits}-bit rows")
        self.model = engine.eval()
        self.fit_report: FitReport | None = None
        self.backbone: dict[str, Any] | None = None  # the source's backbone provenance (as EncoderAdapter)

    @classmethod
    def _pack(cls, source: ModelAdapter) -> PackedEncoder:
        spec = source.spec
        return pack_encoder(source.module().state_dict(), source.config["encoder"], vocab_size=spec.vocab_size,
                            max_len=spec.max_len, num_labels=spec.num_labels, embedding_bits=cls.embedding_bits)

    @classmethod
    def from_beexformer(cls, source: ModelAdapter) -> "PackedBEExformer":
        """Pack a trained beexformer adapter, keeping its (calibrated) exit rule."""
        try:
            settings = ModelSpec.from_dict(source.config)
        except (ConfigError, AttributeError):
            raise BeexError(f"'{getattr(source, 'name', source)}' is not a beexformer model: {cls.name} packs beexformer") from None
        out = cls(settings, source.spec, engine=cls._pack(source))
        rule = source.exit_rule()
        if rule is not None:
            out.rule = rule  # the calibrated rule object (config["exit"] holds the same parameters)
        out.fit_report = source.fit_report
        out.backbone = getattr(source, "backbone", None)  # what the packed network was built from
        out.source = source
        return out

    @classmethod
    def derive(cls, source: ModelAdapter, val: EncodedSplit, cost_fn: CostFn | None = None) -> "PackedBEExformer":
        """Pack the trained beexformer; its exit rule stays as calibrated (same logits)."""
        return cls.from_beexformer(source)

    def fit(self, train_split: EncodedSplit, val: EncodedSplit, progress: Progress = NULL_PROGRESS,
            cost_fn: CostFn | None = None) -> FitReport:
        """beexformer-packed is derived from beexformer: this trains a fresh beexformer (``source``) with
        the same configuration (and calibrates its exit rule), then packs it."""
        source = self.source_class()(self.model_spec, self.spec)
        report = source.fit(train_split, val, progress=progress, cost_fn=cost_fn)
        packed = self.from_beexformer(source)
        self.model_spec, self.rule, self.model, self.fit_report = packed.model_spec, packed.rule, packed.model, report
        self.backbone, self.source = packed.backbone, source
        return report

    def save(self, directory: Path) -> Path:
        """The deployable files, and beside them ``fit.json``: how the network was trained and
        calibrated (provenance the engine never reads, so not part of the artifact's size;
        its checksum is in the header)."""
        from .._io import atomic_write_text, sha256_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        fit = directory / FIT_FILE
        atomic_write_text(fit, json.dumps(self.fit_report.to_dict() if self.fit_report else None))
        meta = {"config": self.config, "task": self.spec.to_dict(), "fit_sha256": sha256_file(fit)}
        if self.backbone:  # only on a backbone: other models' headers are as before
            meta["backbone"] = self.backbone
        return write_packed(directory, self.name, self.model, meta)

    @classmethod
    def load(cls, directory: Path) -> "PackedBEExformer":
        model, doc = read_packed(Path(directory), cls.name)
        try:
            adapter = cls(ModelSpec.from_dict(doc["config"]), TaskSpec(**doc["task"]), engine=model)
        except (KeyError, TypeError, BeexError) as exc:
            raise BeexError(f"checkpoint {directory} does not match model '{cls.name}' ({str(exc).splitlines()[0]}): re-derive it") from None
        if adapter.config["encoder"] != model.enc:
            raise BeexError(f"checkpoint {directory}: its packed architecture differs from its config: re-derive it")
        adapter.backbone = doc.get("backbone")
        fit = Path(directory) / FIT_FILE
        if fit.is_file():
            from .._io import sha256_file

            if sha256_file(fit) != doc.get("fit_sha256"):
                raise BeexError(f"checkpoint {directory}: {FIT_FILE} does not match its checksum: delete the folder and re-derive it")
            adapter.fit_report = FitReport.from_dict(json.loads(fit.read_text(encoding="utf-8")))
        return adapter

    def implementation(self) -> Implementation:
        """What runs this model in this process (see :func:`implementation`); raises
        :class:`~beexbench.results.implementation.FastPathUnavailable` when the native engine
        cannot run and no fallback was allowed."""
        return implementation(self.name, self.model, self.exit_rule())

    def deployable_files(self, directory: Path) -> list[Path]:
        from ..adapters.checkpoint import META, WEIGHTS
        from .packed import PACKED_FILE

        return [Path(directory) / f for f in (PACKED_FILE, WEIGHTS, META)]

    def precision(self) -> Precision:
        """As beexformer: 1-bit weights (logical [out, in], stored packed) with an fp32 alpha per
        row, (1, 1) products for every packed Linear and Q.K^T, fp32 for the rest; the token
        embedding (logical [vocab, d] ``tok.weight``) at its stored bits: 1 (its fp32 scale
        counted as a 1-bit weight's alpha), 8 or 4 with its declared fp16 ``tok.scale``, or 32."""
        params: dict[str, int] = {name: 32 for name, _ in self.model.named_parameters()}
        tok = self.model.tok
        params["tok.weight"] = tok.bits
        if tok.bits in (8, 4):
            params["tok.scale"] = 16  # stored fp16 (SCALE_DTYPE)
        products: dict[str, tuple[int, int]] = {}
        for name, mod in self.model.named_modules():
            if isinstance(mod, PackedLinear):
                params[f"{name}.weight"] = 1
                if mod.bias is not None:
                    params[f"{name}.bias"] = 32
                if mod.shift is not None:
                    params[f"{name}.shift"] = 32
                products[name] = (1, 1)
            elif isinstance(mod, PackedQK):
                products[name] = (1, 1)
            elif isinstance(mod, FloatMatMul):
                products[name] = (32, 32)
            elif isinstance(mod, nn.Linear):
                products[name] = (32, 32)
        return Precision(params=params, products=products, notes=(
            kernel_note() + "; 1-bit weights packed 64 to a word with an fp32 alpha per row, input shift folded "
            "into the packing threshold; Q.K^T on packed signs; position embedding, LayerNorms, softmax, A.V and "
            "exit heads fp32",
            embedding_note(self.model)))


def embedding_note(model: PackedEncoder) -> str:
    bits, a5 = model.tok.bits, bool(model.enc.get("binary_embedding"))
    what = EMBEDDING_NAMES[bits]
    if bits == 32:
        exact = "the trained table"
    elif bits == 1:
        exact = "exactly the A5 table alpha_row * sign(E) the model was trained with (lossless)"
    else:
        exact = ("rounded from the trained A5 table" if a5 else "rounded from the trained fp32 table") + \
            ": this deployment's logits differ from the float model's (the accuracy is its own)"
    cost = "" if bits == 32 else "; one multiply per element by the row's scale (counted in flops)"
    return f"token embedding: {what} (embedding_bits={bits}), {exact}{cost}"


class PackedBEExformerInt4(PackedBEExformer):
    """beexformer-packed with int4 token rows (per-row fp16 scale): half the int8 table."""

    name = "beexformer-packed-int4"

    embedding_bits = 4


class PackedBEExformerFP32Rows(PackedBEExformer):
    """beexformer-packed with the trained fp32 token table: the trained model's predictions and exits, bit for bit."""

    name = "beexformer-packed-fp32emb"

    # int8 rows cost a binarized network on a pretrained backbone accuracy (a row's rounding
    # flips signs downstream: 0.9 points on trec, docs/BENCHMARKS.md); this deployment keeps the
    # table as trained, for four times the int8 table's bytes
    embedding_bits = 32


class PackedBEExformerA5(PackedBEExformer):
    """The A5 ablation (``beexformer-a5``: binary token embedding) deployed with the packed
    engine: 1-bit token rows with an fp32 scale per row, exactly the trained table."""

    name = "beexformer-a5-packed"

    derived_from = "beexformer-a5"
    role = deployment_of("beexformer-a5")
