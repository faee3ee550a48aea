"""INR editing: predict per-weight deltas so that the edited INR renders the edited image.

The field's editing task (NFN, Zhou et al. 2023): given a SIREN fitted to an
image, output new weights whose rendering is the image's grey-level dilation.
:class:`INREditor` wraps any backbone and reads out one delta per weight and
bias, with the symmetry of the weights:

* ``gnn`` / ``transformer``: the encoder's final edge and node states
  (equivariant: they move with the neurons) go through a linear map each, to
  one delta per edge (weight) and per node (bias); the template maps them back
  to the flat parameter vector.
* ``dwsnet`` / ``nfn-hnp`` / ``nfn-np``: the equivariant layers' weight-space
  features go through one more equivariant layer to one channel: a delta per
  weight and bias.
* ``sane``: SANE's token latents (one per neuron, window by window) go through a linear map to the values of
  their tokens, which the token template scatters back to one delta per weight and bias (not equivariant: the
  token view learns the symmetry from augmentation, as SANE does).
* ``mlp``: an MLP from the flat parameters to all deltas (not equivariant).

The delta's last layer starts at zero, so an untrained editor returns the input
INR. The target is the dilation of what the input INR renders (no image files
needed), and ``forward`` returns each INR's pixel MSE between the edited
rendering and that target, ``[N, 1]``: the training loop minimises its mean
(``TrainConfig(task="editing")``) and reports it as ``mse``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from wslgraph.baselines import BASELINES
from wslgraph.baselines.equivariant import WeightSpaceLinear, from_canonical
from wslgraph.baselines.models import EquivariantStack, FlatMLP
from wslgraph.baselines.sane import SANE
from wslgraph.convert.template import GraphTemplate
from wslgraph.errors import UnsupportedModuleError
from wslgraph.graph.layout import common_layout
from wslgraph.heads.autoencoder import dilate
from wslgraph.nn.encoders import GNNEncoder, GraphEncoderBase, TransformerEncoder
from wslgraph.weightspace import batch_params, from_weight_space
from wslgraph.weightspace.functional import INRArchitecture, inr_forward, pixel_grid

__all__ = ["INREditor", "EDITABLE"]

EDITABLE = ("gnn", "transformer", "dwsnet", "nfn-hnp", "nfn-np", "sane", "mlp")


class INREditor(nn.Module):
    """Per-weight edits of MLP INRs by a wslgraph encoder or a peer (see the module docstring).

    Args:
        backbone: ``"gnn"``, ``"transformer"``, ``"dwsnet"``, ``"nfn-hnp"``, ``"nfn-np"``, ``"sane"`` or ``"mlp"``.
        image_shape: ``(height, width)`` the INRs render (default: ``(28, 28)``).
        output_offset: Added to the INR's output (the zoo recipe's; ``0.5`` for ``dws``).
        transform: Image edit to learn, ``[N, C, H, W] -> [N, C, H, W]`` (default: 3x3 dilation).
        scale: Deltas are ``scale`` times the readout (default: ``0.1``).
        **options: The backbone's constructor options (``hidden``, ``num_layers``, ...).
    """

    def __init__(self, backbone: str = "gnn", image_shape: tuple[int, int] = (28, 28), output_offset: float = 0.0,
                 transform: Callable[[Tensor], Tensor] = dilate, scale: float = 0.1, **options: object) -> None:
        super().__init__()
        if backbone not in EDITABLE:
            raise ValueError(f"backbone must be one of {EDITABLE}, got {backbone!r}")
        self.backbone_name, self.options = backbone, options
        self.image_shape, self.output_offset = tuple(image_shape), output_offset
        self.transform, self.scale = transform, scale
        self.architecture: INRArchitecture | None = None
        if backbone in ("gnn", "transformer"):
            self.backbone = (GNNEncoder if backbone == "gnn" else TransformerEncoder)(1, **options)
            self.backbone.head = nn.Identity()  # the graph-level head is not used: edits are read from the states
            self.edge_head: nn.Linear | None = None  # edge_dim outputs, once the first batch shows it
            self.node_head = nn.Linear(self.backbone.hidden, 1)
            nn.init.zeros_(self.node_head.weight)
            nn.init.zeros_(self.node_head.bias)
        elif backbone == "mlp":
            self.backbone = None  # FlatMLP(num_params) once the architecture is known
        else:
            self.backbone = BASELINES[backbone](1, **options)
        self.register_buffer("_coords", torch.empty(0, 2), persistent=False)

    # ------------------------------------------------------------ plumbing
    def _setup(self, batch: object) -> None:
        layout = common_layout(batch)
        if layout is None:
            raise UnsupportedModuleError("INREditor needs a batch of one INR architecture (GraphTemplate.batch)")
        template = GraphTemplate(layout)
        self.architecture = INRArchitecture.from_template(template)
        device = batch.x.device
        self._coords = pixel_grid(*self.image_shape, device)
        if self.backbone_name == "mlp":
            self.backbone = FlatMLP(layout.num_params, **self.options).to(device)
            self.backbone._params(batch)  # build for the architecture
            nn.init.zeros_(self.backbone.mlp[-1].weight)
            nn.init.zeros_(self.backbone.mlp[-1].bias)
        elif isinstance(self.backbone, EquivariantStack):
            self.backbone._params(batch)  # build for the architecture
            model = self.backbone
            self.weight_head = WeightSpaceLinear(model.spec, model.hidden, 1, model.permute_io).to(device)
            for parameter in self.weight_head.parameters():
                nn.init.zeros_(parameter)
        elif isinstance(self.backbone, SANE):
            self.backbone._params(batch)  # build for the architecture
            transformer = self.backbone.transformer
            self.token_head = nn.Linear(transformer.latent, transformer.tokens.token_width).to(device)
            nn.init.zeros_(self.token_head.weight)
            nn.init.zeros_(self.token_head.bias)
        else:
            self.edge_head = nn.Linear(self.backbone.hidden, layout.edge_dim).to(device)
            nn.init.zeros_(self.edge_head.weight)
            nn.init.zeros_(self.edge_head.bias)

    def fit_statistics(self, batches: object) -> INREditor:
        """The backbone's input normalisation, from training batches."""
        if hasattr(self.backbone, "fit_statistics"):
            self.backbone.fit_statistics(batches)
        return self

    # --------------------------------------------------------------- editing
    def delta(self, batch: object) -> Tensor:
        """The predicted change of every parameter, ``[N, P]`` (flat template order)."""
        if self.architecture is None:
            self._setup(batch)
        return self._delta(batch, batch_params(batch)[0])

    def _delta(self, batch: object, params: Tensor) -> Tensor:
        """:meth:`delta`, given the batch's flat parameters (read once per step)."""
        if isinstance(self.backbone, GraphEncoderBase):
            h, e = self.backbone.encode(batch)
            edits = copy.copy(batch)
            edits.x = self.node_head(h).expand(-1, batch.x.shape[1]) * batch.x_mask  # bias column only for MLPs
            edits.edge_attr = self.edge_head(e)
            edits.scalars = torch.zeros_like(batch.scalars)
            out = self.architecture.template.unbatch(edits)
        elif isinstance(self.backbone, FlatMLP):
            out = self.backbone(params)
        elif isinstance(self.backbone, SANE):
            transformer = self.backbone.transformer
            latents = transformer.token_latents(self.backbone.normalize(self.backbone._params(params)))
            out = transformer.tokens.rows(self.token_head(latents))  # padding slots are dropped
        else:
            model = self.backbone
            features = model.equivariant_features(model.normalize(model._params(params)))
            weights, biases = from_canonical(self.weight_head(features), model.slots, model.spec, 1)
            out = from_weight_space(weights, biases, model.spec)
        return self.scale * out

    def edit(self, batch: object) -> Tensor:
        """Edited flat parameters ``[N, P]``."""
        if self.architecture is None:
            self._setup(batch)
        params, _ = batch_params(batch)
        return params + self._delta(batch, params)

    def render(self, params: Tensor) -> Tensor:
        """Images ``[N, C, H, W]`` rendered by flat INR parameters."""
        pixels = inr_forward(params, self._coords, self.architecture, self.output_offset)
        return pixels.transpose(1, 2).reshape(params.shape[0], -1, *self.image_shape)

    def forward(self, batch: object) -> Tensor:
        """Per-INR pixel MSE ``[N, 1]`` between the edited rendering and the edited input rendering."""
        if self.architecture is None:
            self._setup(batch)
        params, _ = batch_params(batch)
        with torch.no_grad():
            target = self.transform(self.render(params))
        edited = self.render(params + self._delta(batch, params))
        return (edited - target).square().flatten(1).mean(dim=1, keepdim=True)

    def extra_repr(self) -> str:
        return f"backbone={self.backbone_name!r}, image_shape={self.image_shape}, scale={self.scale}"
