"""Graph sizes and feature values counted by hand."""

import torch
from torch import nn

from wslgraph import to_graph
from wslgraph.graph import Activation, EdgeType, NodeType
from wslgraph.zoo import BasicBlock, siren


def _mlp_231() -> nn.Sequential:
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
        model[0].bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
        model[2].weight.copy_(torch.tensor([[7.0, 8.0, 9.0]]))
        model[2].bias.copy_(torch.tensor([0.5]))
    return model


def test_mlp_2_3_1_counts_and_values() -> None:
    graph = to_graph(_mlp_231())
    assert graph.num_nodes == 2 + 3 + 1
    assert graph.num_edges == 2 * 3 + 3 * 1
    assert graph.edge_index.tolist() == [[0, 1, 0, 1, 0, 1, 2, 3, 4], [2, 2, 3, 3, 4, 4, 5, 5, 5]]
    assert graph.edge_attr.view(-1).tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert torch.allclose(graph.x[:, 0], torch.tensor([0, 0, 0.1, 0.2, 0.3, 0.5]))
    assert graph.x[:, 1:].abs().sum() == 0
    assert graph.x_mask[:, 0].tolist() == [False, False, True, True, True, True]
    assert not graph.x_mask[:, 1:].any()
    assert graph.node_type.tolist() == [NodeType.INPUT] * 2 + [NodeType.HIDDEN] * 3 + [NodeType.OUTPUT]
    assert graph.layer.tolist() == [0, 0, 1, 1, 1, 2]
    assert graph.io_position.tolist() == [0, 1, -1, -1, -1, 0]
    assert graph.activation.tolist() == [0, 0, Activation.RELU, Activation.RELU, Activation.RELU, 0]
    assert graph.edge_type.tolist() == [EdgeType.LINEAR] * 9
    assert graph.scalars.shape == (1, 0)
    assert graph.edge_attr.shape == (9, 1)


def test_two_conv_cnn_with_pooling_and_flatten_head() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(2, 3, 1), nn.Tanh(),
                          nn.Flatten(), nn.Linear(3 * 4 * 4, 4))
    graph = to_graph(model, input_shape=(1, 10, 10))  # 10 -> conv3 -> 8 -> pool -> 4 -> conv1 -> 4
    assert graph.num_nodes == 1 + 2 + 3 + 4
    assert graph.num_edges == 1 * 2 + 2 * 3 + 3 * 4
    assert graph.layout.kernel_grid == (4, 4)  # the 4x4 flatten block is the largest "kernel"
    assert graph.edge_type.tolist() == [EdgeType.CONV] * 8 + [EdgeType.FLATTEN_LINEAR] * 12
    # a 3x3 kernel in a 4x4 grid: leading pad (4 - 3) // 2 = 0, trailing pad 1
    first = graph.edge_attr[0].view(4, 4)
    assert torch.equal(first[:3, :3], model[0].weight[0, 0])
    assert first[3].abs().sum() == 0 and first[:, 3].abs().sum() == 0
    # a 1x1 kernel sits at index (4 - 1) // 2 = 1 of each dim
    second = graph.edge_attr[2 + 1 * 2 + 0].view(4, 4)  # conv2 edge e = o * 2 + i with o=1, i=0
    assert second[1, 1] == model[3].weight[1, 0, 0, 0] and second.count_nonzero() <= 1
    assert graph.edge_index[:, 2 + 1 * 2 + 0].tolist() == [1, 3 + 1]
    # flatten-linear edge (channel c -> output o) holds W[o, c*16:(c+1)*16] as a 4x4 block
    weight = model[6].weight
    for o in range(4):
        for c in range(3):
            e = 8 + o * 3 + c
            assert torch.equal(graph.edge_attr[e], weight[o, c * 16:(c + 1) * 16])
            assert graph.edge_index[:, e].tolist() == [3 + c, 6 + o]
    assert graph.layer.tolist() == [0, 1, 1, 2, 2, 2, 3, 3, 3, 3]
    assert graph.activation[1:3].tolist() == [Activation.RELU] * 2
    assert graph.activation[3:6].tolist() == [Activation.TANH] * 3


def test_residual_block_identity_skip() -> None:
    block = BasicBlock(2, 2).eval()
    graph = to_graph(block)
    assert graph.num_nodes == 2 + 2 + 2
    assert graph.num_edges == 4 + 4 + 2
    assert graph.edge_type.tolist() == [EdgeType.CONV] * 8 + [EdgeType.RESIDUAL] * 2
    assert graph.edge_index[:, 8:].tolist() == [[0, 1], [4, 5]]  # input c -> conv2 c
    identity = torch.zeros(9)
    identity[4] = 1
    assert torch.equal(graph.edge_attr[8], identity) and torch.equal(graph.edge_attr[9], identity)
    # no conv biases; both BatchNorms' four tensors are node features
    assert graph.x_mask.tolist() == [[False] * 7] * 2 + [[False, True, True, True, True, False, False]] * 4
    assert torch.equal(graph.x[2:4, 1], block.bn1.weight.detach())
    assert torch.equal(graph.x[4:6, 4], block.bn2.running_var)
    assert graph.scalars.shape == (1, 2)  # num_batches_tracked of bn1 and bn2
    assert graph.node_type.tolist() == [0, 0, 1, 1, 2, 2]
    assert graph.activation.tolist() == [0, 0, Activation.RELU, Activation.RELU, Activation.RELU, Activation.RELU]


def test_residual_block_with_downsample() -> None:
    graph = to_graph(BasicBlock(2, 4, stride=2))
    assert graph.num_nodes == 2 + 4 + 4 + 4
    assert graph.num_edges == 2 * 4 + 4 * 4 + 2 * 4 + 4
    assert (graph.edge_type == EdgeType.RESIDUAL).sum() == 4
    assert graph.scalars.shape == (1, 3)


def test_sine_in_a_custom_forward_and_sine_module_agree() -> None:
    class Inr(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(2, 4), nn.Linear(4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(torch.sin(30.0 * self.a(x)))

    graph = to_graph(Inr())
    assert graph.activation[2:6].tolist() == [Activation.SINE] * 4
    assert graph.num_nodes == 7 and graph.num_edges == 12


def test_mlp_on_images_flattened_input_gives_one_node_per_pixel() -> None:
    graph = to_graph(nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.ReLU(), nn.Linear(3, 2)))
    assert (graph.node_type == NodeType.INPUT).sum() == 16
    assert graph.num_edges == 16 * 3 + 3 * 2


def test_activation_parameters_are_recorded_for_modules_and_functions() -> None:
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = nn.Linear(2, 3), nn.Linear(3, 3), nn.Linear(3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.c(nn.functional.elu(self.b(nn.functional.leaky_relu(self.a(x), 0.3))))

    groups = to_graph(Functional()).layout.groups
    assert [(g.activation, g.activation_param) for g in groups[1:3]] == [(Activation.LEAKY_RELU, 0.3),
                                                                         (Activation.ELU, 1.0)]
    modules = nn.Sequential(nn.Linear(2, 3), nn.LeakyReLU(0.2), nn.Linear(3, 3), nn.Softplus(beta=2.0),
                            nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1))
    groups = to_graph(modules).layout.groups
    assert [g.activation_param for g in groups[1:4]] == [0.2, 2.0, 0.0]
    assert to_graph(siren(hidden=(4,))).layout.groups[1].activation_param == 30.0
