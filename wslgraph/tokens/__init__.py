"""Networks as token sequences (SANE): :func:`tokenize` / :func:`detokenize`, per architecture a
:class:`TokenTemplate` (one gather per zoo), :func:`tokenize_batch` for mixed architectures, and SANE's windowed
:class:`TokenTransformer`."""

from wslgraph.tokens.model import SinusoidalPositions, TokenTransformer
from wslgraph.tokens.sequence import TokenBatch, TokenSequence, TokenTemplate, detokenize, tokenize, tokenize_batch

__all__ = ["TokenTemplate", "TokenSequence", "TokenBatch", "tokenize", "detokenize", "tokenize_batch",
           "TokenTransformer", "SinusoidalPositions"]
