"""Connectors: mlp_downsample's token order against a literal statement of VILA's 2x2 merge."""

import pytest
import torch

from rgpt_rt.config import ConnectorConfig
from rgpt_rt.model.connector import Downsample2x2, Mlp2xGelu, MlpDownsample


def _literal_downsample(x: torch.Tensor) -> torch.Tensor:
    """For grid g (padded to even with zeros): token j*h + i = [x(2i,2j), x(2i,2j+1), x(2i+1,2j), x(2i+1,2j+1)]."""
    t, c = x.shape
    g = int(t**0.5)
    ge = g + g % 2
    grid = torch.zeros(ge, ge, c)
    grid[:g, :g] = x.view(g, g, c)
    h = ge // 2
    out = torch.zeros(h * h, 4 * c)
    for i in range(h):
        for j in range(h):
            out[j * h + i] = torch.cat(
                [
                    grid[2 * i, 2 * j],
                    grid[2 * i, 2 * j + 1],
                    grid[2 * i + 1, 2 * j],
                    grid[2 * i + 1, 2 * j + 1],
                ]
            )
    return out


@pytest.mark.parametrize("g", [2, 3, 4, 5, 27])
def test_downsample_matches_literal_definition(g):
    x = torch.randn(g * g, 3)
    got = Downsample2x2()(x[None])[0]
    assert got.shape == (((g + 1) // 2) ** 2, 12)
    torch.testing.assert_close(got, _literal_downsample(x), rtol=0, atol=0)


def test_connector_shapes_and_parameter_names():
    cfg = ConnectorConfig("mlp_downsample", 8, 16)
    m = MlpDownsample(cfg)
    assert sorted(k.split(".")[0] for k in m.state_dict()) == ["1", "1", "2", "2", "4", "4"]
    assert m(torch.randn(1, 25, 8)).shape == (1, 9, 16)
    m2 = Mlp2xGelu(ConnectorConfig("mlp2x_gelu", 8, 16))
    assert sorted(m2.state_dict()) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    assert m2(torch.randn(1, 5, 8)).shape == (1, 5, 16)


def test_non_square_grid_is_an_error():
    with pytest.raises(ValueError, match="square token grid"):
        Downsample2x2()(torch.randn(1, 10, 4))
