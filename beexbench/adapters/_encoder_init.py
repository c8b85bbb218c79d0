"""Where a shared-encoder network's weights start, for :class:`~beexbench.adapters.encoder_adapter.EncoderAdapter`:
its random initialisation, a pretrained BERT-format backbone (:func:`on_backbone`: the files, the
checkpoint's architecture, the checks that the task fits it), or another trained model of the run
(:func:`start_from`); and how a record says which (:func:`how_trained`). The adapter module
re-exports these names."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ..errors import BeexError, ConfigError
from .base import TaskSpec
from .spec import SCRATCH, ModelSpec

if TYPE_CHECKING:
    from .encoder_adapter import EncoderAdapter

# the architecture settings a backbone's config.json decides (beexbench.backbones.bert.encoder_config_from_bert)
BACKBONE_ARCHITECTURE = ("d_model", "n_heads", "n_blocks", "d_ff", "ffn", "type_vocab_size", "layer_norm_eps")


def on_backbone(cls: type, model_spec: ModelSpec, task: TaskSpec) -> tuple[Any, ModelSpec]:
    """Resolve ``model_spec.backbone`` and return (its files, the spec with the checkpoint's
    architecture and the weights' sha256). One-line errors: the files, an architecture setting
    that contradicts the checkpoint, a task not encoded for the backbone, a sha256 pin that differs."""
    from ..backbones.bert import bert_sizes, encoder_config_from_bert
    from ..backbones.sources import resolve_backbone

    bb = model_spec.backbone
    files = resolve_backbone(bb.name)
    where = f"backbone {bb.name}"
    if bb.sha256 is not None and files.sha256 != bb.sha256:
        raise BeexError(f"{where}: its weights' sha256 is {files.sha256}, the settings pin {bb.sha256}: "
                        "not the same weights (clear model.backbone.sha256 to take these)")
    arch = encoder_config_from_bert(files.config, f"{where}: config.json")
    sizes = bert_sizes(files.config, f"{where}: config.json")
    default = cls.default_spec(task.problem).encoder if hasattr(cls, "default_spec") else ModelSpec().encoder
    own = model_spec.encoder
    clash = [f"{k} = {getattr(own, k)!r} (the checkpoint's is {v!r})" for k, v in arch.items()
             if getattr(own, k) != v and getattr(own, k) != getattr(default, k)]
    if clash:
        raise ConfigError([(f"model.encoder sets {', '.join(clash)}, which {where} decides: "
                            "leave the architecture out of the settings of a model built on a backbone")])
    if task.vocab_size != sizes["vocab_size"]:
        raise BeexError(f"{where} has a vocabulary of {sizes['vocab_size']} tokens, task '{task.task}' was encoded "
                        f"with {task.vocab_size}: encode the task with the backbone's tokenizer")
    if task.max_len > sizes["max_position_embeddings"]:
        raise BeexError(f"{where} has {sizes['max_position_embeddings']} positions, task '{task.task}' has max_len "
                        f"{task.max_len}: encode the task with the backbone's tokenizer at a max_len of at most "
                        f"{sizes['max_position_embeddings']}")
    if bb.ffn == "own":  # the model keeps its own FFN kind (at the checkpoint's d_ff); the checkpoint's FFN is not loaded
        arch = {k: v for k, v in arch.items() if k != "ffn"}
    resolved = dataclasses.replace(model_spec, encoder=dataclasses.replace(own, **arch),
                                   backbone=dataclasses.replace(bb, sha256=files.sha256))
    return files, resolved


def start_from(model: "EncoderAdapter", source: "EncoderAdapter") -> None:
    """Copy ``source``'s trained network into ``model``'s where they match: every tensor of the
    same name and shape (embeddings, attention, norms; the FFN only when both have the same
    kind), exit heads by the block they follow; what this model has alone (binarization
    shifts and scales, an FFN of another kind, heads after blocks the source has none for)
    keeps its seeded initialisation."""
    mine, theirs = model.encoder_config, source.encoder_config
    sizes = ("d_model", "n_heads", "n_blocks")
    if any(getattr(mine, k) != getattr(theirs, k) for k in sizes):
        raise BeexError(f"{model.name} cannot start from {source.name}: their encoders differ in size "
                        f"({', '.join(f'{k} {getattr(mine, k)} vs {getattr(theirs, k)}' for k in sizes)})")
    own = model.model.state_dict()
    given = source.model.state_dict()
    heads = {}  # this model's head-parameter names -> the source's head at the same block
    for block in model.model.exit_blocks:
        src_head = source.model.head_for(block)
        if src_head is not None:
            dst = model.model.head_for(block)
            dst_name = next(n for n, m in model.model.named_modules() if m is dst)
            src_name = next(n for n, m in source.model.named_modules() if m is src_head)
            heads.update({f"{dst_name}.{k}": f"{src_name}.{k}" for k in dst.state_dict()})
    filled = []
    for key in own:
        if key.startswith("heads."):
            src = heads.get(key)
        elif ".ffn." in key and mine.ffn != theirs.ffn:
            src = None
        else:
            src = key
        if src in given and given[src].shape == own[key].shape:
            own[key] = given[src].clone()
            filled.append(key)
    model.model.load_state_dict(own)
    record = dict(model.backbone or {})
    record["init_from"] = {"model": source.name, "filled": len(filled), "kept": sorted(set(own) - set(filled))}
    model.backbone = record


def how_trained(spec: ModelSpec) -> str | None:
    """How a network with settings ``spec`` was trained, as result records and the report state it,
    or None for one trained from its random initialisation without a teacher (the model class's
    ``training_note`` says that case in its own words)."""
    bb, distill = spec.backbone, spec.distill
    if bb.name == SCRATCH and not bb.init_from and not distill.teacher:
        return None
    start = f"pretrained backbone {bb.name}" if bb.name != SCRATCH else "a random initialisation"
    if bb.init_from:
        start = f"the trained {bb.init_from} ({'fine-tuned from ' + bb.name if bb.name != SCRATCH else 'from scratch'})"
    how = "fine-tuned" if bb.name != SCRATCH or bb.init_from else "trained"
    if distill.teacher:
        kinds = [k for k, w in (("logits", distill.logits), ("hidden states", distill.hidden)) if w > 0]
        taught = f"distilled from {distill.teacher} ({' and '.join(kinds) or 'no terms'}, T={distill.temperature:g})"
    else:
        taught = "no distillation"
    return f"{how} on the task's train split from {start}; {taught}"
