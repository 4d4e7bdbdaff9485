import pytest
import torch

from shammie.core import ShammieError
from shammie.models import MLP, CNN1d, ResNet1d, build_model, cifar_resnet18, count_parameters


@pytest.mark.parametrize("name,kwargs", [("logistic", {}), ("mlp", {"hidden": (16, 8), "batchnorm": True, "dropout": 0.1}),
                                         ("cnn", {"channels": (8, 8), "batchnorm": True}), ("cnn", {"channels": (8, 8, 8), "head": "gap"}),
                                         ("resnet", {"widths": (8, 16)})])
def test_models_map_signals_to_logits(name, kwargs):
    torch.manual_seed(0)
    model = build_model(name, 40, 10, **kwargs).eval()
    x = torch.randn(5, 40)
    assert model(x).shape == (5, 10)
    assert hasattr(model, "blocks") and hasattr(model, "head")


def test_logistic_regression_is_one_linear_layer():
    model = build_model("logistic", 40, 10)
    assert count_parameters(model) == 40 * 10 + 10 and len(model.blocks) == 0


def test_cnn_accepts_channel_dimension_and_counts():
    model = CNN1d(40, 10, channels=(4,), kernel_size=5, strides=(2,))
    assert model(torch.randn(2, 1, 40)).shape == (2, 10)
    # conv 1->4 k5 + bias, then flatten 4*20 -> 10
    assert count_parameters(model) == (4 * 5 + 4) + (4 * 20 * 10 + 10)


def test_cnn_is_translation_equivariant_before_the_head():
    """With stride 1 and circular-free interiors, shifting the input shifts the feature map."""
    torch.manual_seed(0)
    model = CNN1d(64, 3, channels=(4, 4), kernel_size=3, strides=(1, 1)).eval()
    x = torch.zeros(1, 64)
    x[0, 20:30] = torch.randn(10)
    shifted = torch.roll(x, 5, dims=-1)
    f, g = model.features(x), model.features(shifted)
    torch.testing.assert_close(torch.roll(f, 5, dims=-1)[..., 10:50], g[..., 10:50])


@pytest.mark.parametrize("kwargs,match", [({"head": "max"}, "head"), ({"channels": ()}, "at least one"),
                                          ({"strides": (1,)}, "differ"), ({"dropout": 1.0}, "dropout")])
def test_cnn_bad_arguments(kwargs, match):
    args = {"channels": (4, 4), **kwargs}
    with pytest.raises(ShammieError, match=match):
        CNN1d(40, 10, **args)


def test_mlp_and_builder_errors():
    with pytest.raises(ShammieError):
        MLP(0, 10)
    with pytest.raises(ShammieError, match="unknown model"):
        build_model("transformer", 40, 10)


def test_resnet1d_blocks():
    model = ResNet1d(10, widths=(8, 16), blocks_per_stage=2)
    assert len(model.blocks) == 4


def test_cifar_resnet18_on_32x32_and_its_blocks_fire_hooks():
    model = cifar_resnet18(10).eval()
    shapes = []
    for block in model.blocks:
        block.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert shapes == [(2, 64, 32, 32), (2, 64, 32, 32), (2, 128, 16, 16), (2, 256, 8, 8), (2, 512, 4, 4)]
    assert len(model.blocks) == 5 and model.head is model.fc
    assert model.conv1.stride == (1, 1)


def test_vgg_and_resnet20_on_32x32_images_with_blocks_and_head():
    from shammie.models import VGG, VGG_CONFIGS, ResNet20

    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    for model in (VGG("VGG11", 1, batchnorm=True), ResNet20(1, batchnorm=False)):
        model.eval()
        assert model(x).shape == (1, 10)
        assert isinstance(model.blocks, torch.nn.ModuleList) and isinstance(model.head, torch.nn.Linear)
    convs = [m for m in VGG("VGG11", 2).modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [2 * c for c in VGG_CONFIGS["VGG11"] if c != "M"]
    assert len(ResNet20(1).blocks) == 9 and ResNet20(1).head.in_features == 64
    with pytest.raises(ShammieError, match="unknown VGG config"):
        VGG("VGG7")
    with pytest.raises(ShammieError, match="width"):
        ResNet20(0)


def test_connectivity_reexports_the_shared_vgg_and_resnet20():
    import shammie.connectivity as conn
    import shammie.connectivity.models as conn_models
    from shammie import models

    assert conn.VGG is models.VGG and conn.ResNet20 is models.ResNet20
    assert conn_models.VGG is models.VGG and conn_models.ResNet20 is models.ResNet20
