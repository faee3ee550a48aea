"""Hyper-representations: self-supervised embeddings of model zoos, a decoder back to weights, and probes of what
the embeddings know (``wslgraph represent``, ``wslgraph embed``, ``wslgraph probe``)."""

from wslgraph.represent.model import (
    HyperRepresentation,
    TokenRepresentation,
    contrastive_losses,
    normal_scores,
    nt_xent,
    sorted_squared_error,
    tail_weights,
    weight_views,
)
from wslgraph.represent.probe import (
    CLASSIFICATION_TARGETS,
    REGRESSION_TARGETS,
    format_probe_table,
    probe,
    probe_table,
    probe_targets,
)
from wslgraph.represent.run import (
    ENCODERS,
    RepresentOptions,
    build_representation,
    embed_zoo,
    kept_rows,
    load_embeddings,
    load_representation,
    save_embeddings,
    training_rows,
    zoo_digest,
)

__all__ = ["HyperRepresentation", "TokenRepresentation", "weight_views", "nt_xent", "normal_scores",
           "contrastive_losses", "sorted_squared_error", "tail_weights", "probe", "probe_table", "probe_targets",
           "format_probe_table", "REGRESSION_TARGETS", "CLASSIFICATION_TARGETS", "RepresentOptions", "ENCODERS",
           "kept_rows", "training_rows", "build_representation", "load_representation", "embed_zoo", "save_embeddings",
           "load_embeddings", "zoo_digest"]
