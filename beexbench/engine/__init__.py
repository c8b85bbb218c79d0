"""Inference-only engines for trained models.

:mod:`beexbench.engine.packed` runs a trained BEExformer from its deployable packed
format: 1 bit per binarized weight (64 to a word), per-row fp32 scales, the token
embedding as int8 / int4 rows with fp16 row scales (1-bit rows for a model trained with A5), fp32 for what
stays full precision, and the packed-bit kernels of :mod:`beexbench.kernels` for every
W1A1 product and for Q.K^T.  :mod:`beexbench.engine.adapter` registers it as the
``beexformer-packed`` model.
"""
from .packed import (  # noqa: F401
    PACKED_FILE,
    PACKED_FORMAT,
    PACKED_VERSION,
    PackedEmbedding,
    PackedEncoder,
    pack_encoder,
    read_packed,
    write_packed,
)
