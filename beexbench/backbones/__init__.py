"""Pretrained backbones for the shared encoder (issue 17): BERT-format checkpoints mapped onto
:class:`~beexbench.models.encoder.EarlyExitEncoder` (:mod:`.bert`)."""
