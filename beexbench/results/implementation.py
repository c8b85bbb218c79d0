"""Which implementation computed a cell's measurements (``metrics.implementation``), and the
rule for a model whose declared fast path cannot run.

A model that declares a fast path (``beexformer-packed``: the native C++ engine on the native
packed-bit kernels) and finds it unavailable (a build lock held past ``BEEXBENCH_BUILD_TIMEOUT``,
a library that cannot be built or loaded, kernels that fail their self-check on every native
backend) **fails its cell** with the reason: its latency would be that of a path it does not
deploy (about 40x slower). The user may allow the slower path explicitly, and it is then
recorded as a fallback, with the reason and what allowed it: ``BEEXBENCH_ALLOW_FALLBACK=1``, or
forcing that path (``BEEXBENCH_ENGINE=python``, ``BEEXBENCH_KERNELS=fallback``).
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import settings
from ..errors import BeexError
from .codec import Section

PYTORCH = "pytorch"  # the model's own PyTorch modules (no fast path declared)
ONNXRUNTIME = "onnxruntime"  # ONNX Runtime sessions (the fp32 model's ORT deployments)
OPENVINO = "openvino"  # OpenVINO compiled models (ov-fp32 / ov-bf16 / ov-int8)
ENGINES = (PYTORCH, "native", "steps", "python", ONNXRUNTIME, OPENVINO)


class FastPathUnavailable(BeexError):
    """A model's declared fast path cannot run and no fallback was allowed: its cell fails."""


@dataclass(frozen=True, kw_only=True)
class Implementation(Section):
    """What ran a model's forward in the measuring process."""

    # pytorch: the model's PyTorch modules; native: the packed engine's whole-model C++ op;
    # steps: its per-block C++ steps; python: its Python module path (the slow path);
    # onnxruntime: ONNX Runtime sessions (fast_path names the version and execution provider)
    engine: str
    isa: str | None  # the native engine's instruction set (e.g. "avx512"); None when no native engine ran
    kernels: str | None  # packed-bit kernel backend (avx512-vpopcnt, avx2, portable, torch-fallback); None: none used
    fast_path: str | None  # the model's declared fast path in words; None when it declares none
    fallback: bool  # a slower path than the declared fast path ran
    allowed_by: str | None  # what allowed that fallback (an environment setting); None unless fallback
    reason: str | None  # why the fast path did not run; None unless fallback

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine is one of {', '.join(ENGINES)}, not {self.engine!r}")
        if self.fallback != (self.allowed_by is not None) or self.fallback != (self.reason is not None):
            raise ValueError("a fallback has its reason and what allowed it; a fast path has neither")
        if self.fallback and self.fast_path is None:
            raise ValueError("a fallback needs the fast path it replaces")

    @property
    def label(self) -> str:
        """"" on the fast path, else e.g. ``fallback: python engine, torch-fallback kernels``."""
        if not self.fallback:
            return ""
        parts = [f"{self.engine} engine"] + ([f"{self.kernels} kernels"] if self.kernels else [])
        return "fallback: " + ", ".join(parts)

    @classmethod
    def pytorch(cls) -> "Implementation":
        """A model that runs its own PyTorch modules (it declares no fast path)."""
        return cls(engine=PYTORCH, isa=None, kernels=None, fast_path=None, fallback=False, allowed_by=None, reason=None)


def settle(model: str, *, fast_path: str, engine: str, isa: str | None, kernels: str | None,
           reason: str | None, forced_by: str | None = None) -> Implementation:
    """The record of what runs ``model``: its fast path when ``reason`` is None; else a fallback
    the user allowed (``forced_by``: the setting that forced the slower path, else
    ``BEEXBENCH_ALLOW_FALLBACK``), or :class:`FastPathUnavailable` naming the reason."""
    if reason is None:
        return Implementation(engine=engine, isa=isa, kernels=kernels, fast_path=fast_path, fallback=False,
                              allowed_by=None, reason=None)
    allowed = forced_by or (f"{settings.ALLOW_FALLBACK}=1" if settings.allow_fallback() else None)
    if allowed is None:
        raise FastPathUnavailable(
            f"{model}: its fast path ({fast_path}) is unavailable: {reason}; fix that and re-run the cell "
            f"(--resume), or set {settings.ALLOW_FALLBACK}=1 to measure the slower path, labelled as a fallback")
    return Implementation(engine=engine, isa=isa, kernels=kernels, fast_path=fast_path, fallback=True,
                          allowed_by=allowed, reason=reason)


def implementation_of(adapter) -> Implementation:
    """What runs ``adapter``'s predictions in this process: its own ``implementation()`` when it
    declares one (a deployment with a fast path, e.g. beexformer-packed, which raises
    :class:`~beexbench.results.implementation.FastPathUnavailable` when that path cannot run and
    no fallback was allowed: the cell fails with the reason), else its PyTorch modules."""
    declared = getattr(adapter, "implementation", None)
    if not callable(declared):
        return Implementation.pytorch()
    found = declared()
    if not isinstance(found, Implementation):
        raise TypeError(f"{adapter.name}.implementation() returned {type(found).__name__}, not an Implementation")
    return found
