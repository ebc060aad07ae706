"""Random DSpark / DFlash drafters for a tiny HF target (decoder tests)."""
import torch

from dspark_ext.drafters.dspark import DSparkConfig, DSparkDrafter


def make_dspark_for(target, markov: bool = True, block_size: int = 8, confidence: bool = None,
                    head: str = "vanilla", seed: int = 0, layers=None):
    n = target.config.num_hidden_layers
    ids = layers if layers is not None else sorted({0, n // 2, n - 2})
    confidence = markov if confidence is None else confidence
    cfg = DSparkConfig.for_target(
        target.config, block_size=block_size, num_hidden_layers=1, target_layer_ids=ids,
        mask_token_id=target.config.vocab_size - 1, markov_rank=8 if markov else 0,
        markov_head_type=head, enable_confidence_head=confidence,
        confidence_head_with_markov=confidence and markov)
    torch.manual_seed(seed)
    d = DSparkDrafter(cfg)
    with torch.no_grad():
        for p in d.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3)
    d.init_from_target(target.get_input_embeddings().weight,
                       target.get_output_embeddings().weight)
    return d.eval()
