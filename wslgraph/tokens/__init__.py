"""Networks as token sequences (SANE): :func:`tokenize` / :func:`detokenize`, per architecture a
:class:`TokenTemplate` (one gather per zoo), and :func:`tokenize_batch` for mixed architectures."""

from wslgraph.tokens.sequence import TokenBatch, TokenSequence, TokenTemplate, detokenize, tokenize, tokenize_batch

__all__ = ["TokenTemplate", "TokenSequence", "TokenBatch", "tokenize", "detokenize", "tokenize_batch"]
