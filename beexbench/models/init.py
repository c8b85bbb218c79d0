"""One initialisation for every model built on the shared encoder.

BERT's recipe (Devlin et al., 2019; the same in HF ``BertPreTrainedModel._init_weights``),
applied to every module the encoder is made of, binarized ones included:

* token and position embeddings ~ N(0, std), the padding row zero;
* every Linear weight, full precision or the *latent* weight of a binarized layer,
  ~ N(0, std) truncated at 2 std. A binarized layer uses sign(W) scaled by
  alpha = mean|W| (A2), so the latent scale sets alpha (about 0.7 std) and how many Adam
  steps it takes to flip a sign (a few tens at lr 2e-3, so the signs keep learning);
* biases 0 in full-precision layers; ~ N(0, std) in binarized ones. Their +-1 products
  are integers (times alpha), 0 for about one output in five at d = 16: with a zero bias
  that exact 0 is summed with others in attention and reaches the next sign() as a
  rounding residue (1e-10) whose sign depends on the batch shape. A random bias breaks
  those ties, as training would;
* LayerNorm weight 1, bias 0;
* the learnable activation shifts (A3) start at ``-center`` (0, or -0.5 before the
  sigmoid-fed SLFN projection), BiT's activation scale at 1 and its attention
  probability scale at 0.5: set where those modules are built, left as they are.

torch's defaults are what this replaces: ``nn.Embedding`` draws N(0, 1), so with post-LN
blocks and lr ~5e-4 the tables moved about 1% in training and every model learned on a
frozen random projection of its tokens (issue 13).
"""
from __future__ import annotations

from torch import nn

INIT_STD = 0.02


def init_encoder_(model: nn.Module, std: float = INIT_STD) -> nn.Module:
    """Initialise ``model`` in place (every Embedding, Linear and LayerNorm in it)."""
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()
        elif isinstance(module, nn.Linear):  # QuantLinear too: its latent weight
            nn.init.trunc_normal_(module.weight, mean=0.0, std=std, a=-2 * std, b=2 * std)
            if module.bias is not None:
                if getattr(module, "weight_bits", 32) == 1:
                    nn.init.normal_(module.bias, mean=0.0, std=std)
                else:
                    nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model
