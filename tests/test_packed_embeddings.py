"""The packed deployment's token embedding (issue 16): rows stored as inference reads them.

* :class:`PackedEmbedding`'s lookup is its decoded table, bit for bit, in every format;
* A5 (``beexformer-a5``, binary embedding): 1-bit rows are exactly the trained table, so the
  engine equals the float model itself (logits, predictions, exit blocks);
* int4 rows (``PackedBEExformerInt4``) and fp32 rows: the engine equals the float model whose
  token table is the decoded rows (fp32: the float model itself);
* sizes: the declared bits are the tensors in the files, byte for byte; the rest of the
  files is their headers; 1-bit < int4 < int8 < fp32 rows on disk.
"""
from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors import safe_open

from beexbench.adapters.base import TaskSpec
from beexbench.adapters.checkpoint import META, WEIGHTS
from beexbench.adapters.registry import create_model, get_adapter_class
from beexbench.adapters.roles import Role
from beexbench.engine import PACKED_FILE
from beexbench.engine.adapter import PackedBEExformer, PackedBEExformerA5, PackedBEExformerInt4
from beexbench.engine.embedding import FORMATS, PackedEmbedding, binary_table, decode_rows, encode_rows
from beexbench.errors import BeexError
from beexbench.models.encoder import BinaryEmbedding
from beexbench.models.exits import AbsoluteEntropy, ExitRule, FractionalEntropy, Patience
from beexbench.profilers.ops import count_ops
from beexbench.profilers.size import measure_size
from nudged import nudged

SPEC = TaskSpec(task="packed-emb", num_labels=3, vocab_size=60, max_len=20)
SMALL = {"encoder": {"d_model": 40, "n_heads": 4, "n_blocks": 3, "d_ff": 72}}
RULES = [FractionalEntropy(0.1), FractionalEntropy(-0.05, answer="current"), Patience(1), AbsoluteEntropy(1.05),
         ExitRule()]


class PackedFp32Rows(PackedBEExformer):
    name = "beexformer-packed-fp32-rows"
    embedding_bits = 32


def data(n: int, seed: int, spec: TaskSpec = SPEC):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, spec.max_len + 1, (n,), generator=g)
    mask = torch.arange(spec.max_len)[None, :] < lengths[:, None]
    ids = torch.randint(1, spec.vocab_size, (n, spec.max_len), generator=g) * mask
    return ids, mask, ids[:, 0] % spec.num_labels


def trained(name: str, overrides=SMALL, spec: TaskSpec = SPEC, steps: int = 10):
    """Random init plus a few AdamW steps (signs, shifts, scales and the table move)."""
    return nudged(name, spec, overrides, *data(48, 1, spec), steps)


def with_rows(float_adapter, packed):
    """The float model with its token table replaced by the engine's decoded rows."""
    ref = copy.deepcopy(float_adapter)
    with torch.no_grad():
        ref.module().tok.weight.copy_(packed.model.tok.table())
    return ref


def same_answers(float_adapter, packed, n: int = 24, seed: int = 3) -> None:
    """Every exit's logits, and predictions and exit blocks under several rules (batched with
    row removal and batch 1), fused and module paths: equal within 1e-5."""
    ids, mask, _ = data(n, seed)
    with torch.no_grad():
        for x, y in zip(float_adapter.forward(ids, mask), packed.forward(ids, mask)):
            torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-5)
            assert torch.equal(x.argmax(-1), y.argmax(-1))
    for rule in RULES:
        float_adapter.set_rule(rule)
        packed.rule = rule
        a, b = float_adapter.predict(ids, mask), packed.predict(ids, mask)
        c = packed.model.infer_modules(ids, mask, rule)
        for got in (b, c):
            assert torch.equal(a.exit_block, got.exit_block)
            torch.testing.assert_close(got.logits, a.logits, rtol=1e-5, atol=1e-5)
        for i in range(0, n, 5):
            k = int(mask[i].sum())
            a, b = float_adapter.predict(ids[i:i + 1, :k], mask[i:i + 1, :k]), packed.predict(ids[i:i + 1, :k], mask[i:i + 1, :k])
            assert torch.equal(a.exit_block, b.exit_block)
            torch.testing.assert_close(b.logits, a.logits, rtol=1e-5, atol=1e-5)


# -- the formats ---------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [64, 40, 7, 130])
@pytest.mark.parametrize("bits", FORMATS)
def test_lookup_is_the_decoded_table(bits, dim):
    g = torch.Generator().manual_seed(dim)
    table = torch.randn(33, dim, generator=g)
    table[0] = 0.0  # an all-zero row (scale 1 for int8/int4, 0 for 1-bit)
    emb = PackedEmbedding.from_table(table, bits)
    ids = torch.randint(0, 33, (4, 9), generator=g)
    assert torch.equal(emb(ids), emb.table()[ids])
    assert torch.equal(emb.weight, emb.table())
    assert torch.equal(emb.table(), decode_rows(*encode_rows(table, bits), bits, dim))
    assert isinstance(emb, torch.nn.Embedding) and dict(emb.named_parameters()) == {} and emb.state_dict() == {}
    if bits == 32:
        assert torch.equal(emb.table(), table)
    elif bits == 1:
        assert torch.equal(emb.table(), binary_table(table))  # A5's alpha_row * sign(E), exactly
    else:
        step = emb.scale[:, None]
        assert bool(((emb.table() - table).abs() <= step / 2 + 1e-6).all())


def test_codes_are_stored_at_their_bits():
    emb = {b: PackedEmbedding.from_table(torch.randn(10, 100), b) for b in FORMATS}
    assert (emb[32].codes.dtype, tuple(emb[32].codes.shape), emb[32].scale.numel()) == (torch.float32, (10, 100), 0)
    assert (emb[8].codes.dtype, tuple(emb[8].codes.shape)) == (torch.int8, (10, 100))
    assert (emb[4].codes.dtype, tuple(emb[4].codes.shape)) == (torch.uint8, (10, 50))
    assert (emb[1].codes.dtype, tuple(emb[1].codes.shape)) == (torch.int64, (10, 2))
    assert all(tuple(emb[b].scale.shape) == (10,) and emb[b].scale.dtype == torch.float32 for b in (8, 4, 1))


# -- A5: 1-bit rows, lossless ------------------------------------------------------------------
@pytest.fixture(scope="module")
def a5():
    f = trained("beexformer-a5")
    return f, PackedBEExformerA5.derive(f, None)


def test_a5_ablation_is_registered():
    cls = get_adapter_class("beexformer-a5")
    assert cls.role == Role("ablation", "beexformer")
    assert cls.default_spec().encoder.binary_embedding is True
    assert PackedBEExformerA5.derived_from == "beexformer-a5" and PackedBEExformerA5.role == Role("deployment", "beexformer-a5")
    assert PackedBEExformerA5.default_spec() == cls.default_spec()


def test_a5_engine_equals_the_float_model(a5):
    f, p = a5
    assert isinstance(f.module().tok, BinaryEmbedding)
    tok = p.model.tok
    assert tok.bits == 1 and tok.codes.dtype == torch.int64
    w = f.module().tok.weight.detach()
    assert torch.equal(tok.table(), binary_table(w))  # exactly the table the float model reads
    assert "lossless" in p.precision().notes[-1]
    same_answers(f, p)  # the float model itself, not a modified copy


def test_a5_sizes_like_the_float_model_and_round_trips(a5, tmp_path):
    f, p = a5
    assert measure_size(p).bits == measure_size(f).bits  # tok.weight: 1 bit + one fp32 alpha per row
    p.save(tmp_path / "p")
    q = PackedBEExformerA5.load(tmp_path / "p")
    doc = json.loads((tmp_path / "p" / META).read_text())
    assert doc["packed"]["embedding"]["bits"] == 1 and doc["packed"]["embedding"]["lossless"] is True
    ids, mask, _ = data(16, 9)
    with torch.no_grad():
        for x, y in zip(p.forward(ids, mask), q.forward(ids, mask)):
            assert torch.equal(x, y)
    # the plain beexformer-packed picks 1-bit rows for an A5 network too (its default)
    assert PackedBEExformer.derive(f, None).model.tok.bits == 1


# -- int4 and fp32 rows ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plain():
    return trained("beexformer")


def test_int4_engine_equals_the_float_model_with_decoded_rows(plain, tmp_path):
    p = PackedBEExformerInt4.derive(plain, None)
    assert p.model.tok.bits == 4 and p.model.tok.codes.dtype == torch.uint8
    assert not torch.equal(p.model.tok.table(), plain.module().tok.weight.detach())  # rounded: not lossless
    same_answers(with_rows(plain, p), p)
    p.save(tmp_path / "p4")
    q = PackedBEExformerInt4.load(tmp_path / "p4")
    assert q.model.tok.bits == 4 and torch.equal(q.model.tok.codes, p.model.tok.codes)
    with pytest.raises(BeexError, match="not 'beexformer-packed'"):  # a file's format is its class's setting
        PackedBEExformer.load(tmp_path / "p4")
    with pytest.raises(BeexError, match="deploys 8-bit token rows; this engine has 4-bit"):
        PackedBEExformer(p.model_spec, SPEC, engine=q.model)
    assert "embedding_bits=4" in p.precision().notes[-1]


def test_fp32_rows_equal_the_float_model(plain):
    p = PackedFp32Rows.derive(plain, None)
    assert torch.equal(p.model.tok.table(), plain.module().tok.weight.detach())
    same_answers(plain, p)
    a, b = count_ops(plain, 12), count_ops(p, 12)
    assert (b.flops, b.bops, b.macs) == (a.flops, a.bops, a.macs)  # fp32 rows: a lookup, nothing to dequantize


def test_one_bit_rows_need_a5(plain):
    class OneBit(PackedBEExformer):
        name = "one-bit-rows"
        embedding_bits = 1

    with pytest.raises(BeexError, match="binary_embedding"):
        OneBit.derive(plain, None)


# -- sizes: bits = tensors in the files; ordering on disk -----------------------------------------
def test_declared_bits_are_the_bytes_in_the_files(tmp_path):
    """At the default model's widths (d_model 64, d_ff 128: no padding bits in the packed words)
    the declared bits are exactly the tensor bytes of the two safetensors files, in every
    format; disk bytes are those plus the files' headers (safetensors JSON + checkpoint.json)."""
    spec = TaskSpec(task="t", num_labels=2, vocab_size=500, max_len=32)
    enc = {"encoder": {"d_model": 64, "n_heads": 4, "n_blocks": 2, "d_ff": 128}}
    torch.manual_seed(0)
    f = create_model("beexformer", spec, enc)
    torch.manual_seed(0)
    f5 = create_model("beexformer-a5", spec, enc)
    f.save(tmp_path / "float")
    float_disk = measure_size(f, f.deployable_files(tmp_path / "float")).disk_bytes
    disk = {}
    for cls, src in ((PackedFp32Rows, f), (PackedBEExformer, f), (PackedBEExformerInt4, f), (PackedBEExformerA5, f5)):
        p = cls.derive(src, None)
        d = tmp_path / cls.name
        p.save(d)
        files = p.deployable_files(d)
        size = measure_size(p, files)
        tensor_bytes, headers = 0, (d / META).stat().st_size
        for name in (PACKED_FILE, WEIGHTS):
            with safe_open(str(d / name), "pt") as fh:
                tensor_bytes += sum(fh.get_tensor(k).numel() * fh.get_tensor(k).element_size() for k in fh.keys())
            headers += 8 + int.from_bytes((d / name).read_bytes()[:8], "little")  # safetensors: u64 length + JSON
        assert {f.name for f in files} == {PACKED_FILE, WEIGHTS, META}
        assert size.total_bytes == tensor_bytes, cls.name
        assert size.disk_bytes == tensor_bytes + headers, cls.name
        disk[p.model.tok.bits] = size.disk_bytes
    assert disk[1] < disk[4] < disk[8] < disk[32] < float_disk


def test_grouped_tensors_are_checked_against_the_architecture(plain, tmp_path):
    """Each file holds one flat tensor per dtype; a blob of another length (even with a matching
    checksum) is refused."""
    from safetensors.torch import load_file, save_file

    from beexbench._io import sha256_file

    p = PackedBEExformer.derive(plain, None)
    p.save(tmp_path / "p")
    blobs = load_file(str(tmp_path / "p" / PACKED_FILE))
    assert set(blobs) == {"float32", "float16", "int64", "int8"} and all(b.dim() == 1 for b in blobs.values())
    assert blobs["float16"].numel() == plain.spec.vocab_size  # the int8 rows' scales
    assert set(load_file(str(tmp_path / "p" / WEIGHTS))) == {"float32"}
    blobs["float32"] = blobs["float32"][:-1]
    save_file(blobs, str(tmp_path / "p" / PACKED_FILE))
    doc = json.loads((tmp_path / "p" / META).read_text())
    doc["packed"]["sha256"] = sha256_file(tmp_path / "p" / PACKED_FILE)
    (tmp_path / "p" / META).write_text(json.dumps(doc))
    with pytest.raises(BeexError, match="do not match the architecture in its header.*re-derive"):
        PackedBEExformer.load(tmp_path / "p")
