"""K weight samples through one forward pass: batched matmuls and grouped convolutions."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from .weight_op_messenger import LayerOpMessenger
from .weight_rules import Moments

#: plain number of dims of a weight per op type
_WEIGHT_DIMS = {"linear": 2, "conv2d": 4}


def _flat_bias(b: torch.Tensor | None, k: int) -> torch.Tensor | None:
    """A plain (out,) or stacked (K, out) bias as the (K·out,) bias of K side-by-side layers."""
    return None if b is None else (b.reshape(-1) if b.dim() == 2 else b.repeat(k))


def _stacked_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, k: int) -> torch.Tensor:
    n, rest, n_in = x.shape[0], x.shape[1:-1], x.shape[-1]
    # objects are sample-minor: row i*K + j is object i under weight sample j
    xk = x.reshape(n // k, k, -1, n_in).transpose(0, 1).reshape(k, -1, n_in)
    out = torch.bmm(xk, w.transpose(1, 2))  # (K, objects * rest, out)
    if b is not None:
        out = out + (b[:, None, :] if b.dim() == 2 else b)
    return out.reshape(k, n // k, -1, w.shape[1]).transpose(0, 1).reshape(n, *rest, w.shape[1])


def _stacked_conv2d(x, w, b, k, stride=1, padding=0, dilation=1, groups=1) -> torch.Tensor:
    n, c, h, width = x.shape
    out_ch = w.shape[1]
    bias = _flat_bias(b, k)
    # (N*K, C, H, W) is (N, K*C, H, W) in memory: sample j's channels form group j
    out = F.conv2d(x.reshape(n // k, k * c, h, width), w.flatten(0, 1), bias, stride, padding, dilation, groups * k)
    return out.reshape(n, out_ch, *out.shape[2:])


def _shared_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, k: int) -> torch.Tensor:
    """K stacked layers on objects NOT yet repeated: one matmul with K·out outputs."""
    out = F.linear(x, w.flatten(0, 1), _flat_bias(b, k))  # (N, *rest, K*out)
    out = out.unflatten(-1, (k, w.shape[1])).movedim(-2, 1)  # (N, K, *rest, out)
    return out.flatten(0, 1)  # sample-minor rows


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _shared_conv2d(x, w, b, k, stride=1, padding=0, dilation=1, groups=1) -> torch.Tensor:
    """K stacked kernels on images NOT yet repeated: the input is unfolded ONCE and multiplied by
    all K·out kernels in one matmul; the (N, K·out, H, W) result is the sample-minor
    (N·K, out, H, W) batch in memory. (One convolution with K·out output channels computes the
    same, but oneDNN runs it 2-5x slower than the matmul on a LeNet-5's first layer.)"""
    out_ch, (kh, kw) = w.shape[1], w.shape[-2:]
    if isinstance(padding, str):  # "same" / "valid": let the convolution work out the geometry
        out = F.conv2d(x, w.flatten(0, 1), _flat_bias(b, k), stride, padding, dilation, groups)
        return out.reshape(x.shape[0] * k, out_ch, *out.shape[2:])
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    h_out = (x.shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w_out = (x.shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    cols = F.unfold(x, (kh, kw), dilation=(dh, dw), padding=(ph, pw), stride=(sh, sw))  # (N, C·kh·kw, L)
    out = w.reshape(k * out_ch, -1) @ cols  # (N, K·out, L)
    bias = _flat_bias(b, k)
    if bias is not None:
        out = out + bias[:, None]
    return out.view(x.shape[0] * k, out_ch, h_out, w_out)


def _per_object_linear(x, w, b, k, shared, moments: Mapping) -> torch.Tensor:
    """A Gaussian dense layer's outputs drawn per row from their exact Gaussian (VN eq. 4), given
    the weight's :class:`Moments` (and the bias's, when it is Gaussian too); with ``shared`` the
    mean and variance ops run once per object and K noise draws fan them out."""
    m = moments[w]
    shape = w.shape[1:]
    mean = None if m.loc is None else F.linear(x, m.loc.expand(shape))
    var = F.linear(x.square(), m.var.expand(shape))
    b_m = None if b is None else moments.get(b)
    if b_m is not None:  # a Gaussian bias joins the Gaussian output
        var = var + b_m.var
        if b_m.loc is not None:
            mean = b_m.loc.expand(var.shape) if mean is None else mean + b_m.loc
    elif b is not None and b.dim() == 1:  # a parameter bias
        mean = b.expand(var.shape) if mean is None else mean + b
    std = var.sqrt_()
    if shared:  # (N, out) -> (N, K, out), sample-minor rows
        std = std[:, None].expand(-1, k, -1)
        mean = None if mean is None else mean[:, None]
    noise = torch.randn_like(std)
    out = noise.mul_(std) if mean is None else noise.mul_(std).add_(mean)
    out = out.reshape(-1, shape[0])
    if b is not None and b_m is None and b.dim() == 2:  # a stacked non-Gaussian bias: per sample
        out = (out.view(-1, k, shape[0]) + b).view(-1, shape[0])
    return out


def _check_repeated(x: torch.Tensor, k: int) -> None:
    if x.shape[0] % k:
        raise ValueError(f"expected the objects repeated {k} times (rows divisible by {k}), got {x.shape[0]} rows")


class StackedWeightsMessenger(LayerOpMessenger):
    r"""Run ``K`` weight samples of a network in ONE forward pass.

    Every sampled weight is given as a stack of shape ``(K, *weight.shape)`` (e.g. by
    replaying a trace whose site values are stacked) and the network's input holds each
    object ``K`` times, sample-minor: row ``i·K + j`` is object ``i`` under weight sample
    ``j`` (``x.repeat_interleave(K, 0)``). A ``linear`` effect with a stacked weight becomes
    one batched matmul; a ``conv2d`` effect one grouped convolution with ``K`` groups, for
    which the sample-minor layout is already the memory layout, so nothing is copied.
    Effects whose weight is not stacked (deterministic layers) run the plain op on all
    ``N·K`` rows. Elementwise layers, pooling and BatchNorm in eval mode act per row and need
    nothing. Biases may be stacked too, shape ``(K, out)``.

    Test-time averaging (VN eq. 2) of K samples then costs one pass over K-times-larger
    batches instead of K passes: fewer, larger kernels.

    With ``num_objects=N`` the input may instead hold each object ONCE: the layers before
    the first sampled one run once per object (their outputs are the same under every
    weight sample), and the first sampled layer applies its K weights to the shared input
    as ONE op with K·out outputs (a convolution with K·out channels, not K groups), whose
    output already is the sample-minor ``N·K`` batch. This is what makes K samples cheaper
    than K plain passes: the deterministic prefix and the first layer's input unfolding
    are done once instead of K times. Rows are told apart by count, so ``N`` must be given.

    With ``per_object``, a mapping from stacked weight tensors to their :class:`Moments`, a
    ``linear`` effect on a 2-D input whose weight is in it draws its outputs per row from
    their Gaussian (local reparameterization, VN eq. 4) instead of applying the K weights:
    one object's outputs of a dense layer with independent Gaussian weights are independent
    Gaussians given its input, so every object's outputs have exactly the distribution the
    K weight samples give them; only the correlation between different objects under one
    sample is dropped (test-time averaging, VN eq. 2, is per object and does not use it).
    The layer then reads its mean and variance once per pass instead of K weight matrices,
    and on a shared input runs the two ops once per object. Convolutions keep the K kernels:
    their output positions share a kernel, so per-position noise would not be exact.

    :param int num_samples: K.
    :param int num_objects: N, the number of distinct objects, when the input is not repeated.
    :param per_object: ``{stacked weight (or bias) tensor: Moments}`` of Gaussian dense layers.
    """

    def __init__(
        self, num_samples: int, num_objects: int | None = None, per_object: Mapping[torch.Tensor, Moments] | None = None
    ) -> None:
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"expected num_samples to be a positive int, got {num_samples!r}")
        if num_objects is not None and (not isinstance(num_objects, int) or num_objects < 1):
            raise ValueError(f"expected num_objects to be None or a positive int, got {num_objects!r}")
        super().__init__()
        self.num_samples = num_samples
        self.num_objects = num_objects
        self.per_object = per_object if per_object is not None else {}
        #: (rows, elements per row) of every linear/conv2d output of the passes run under it
        self.outputs: list[tuple[int, int]] = []

    def _pyro_post_linear(self, msg) -> None:
        self._record_output(msg["value"])

    def _pyro_post_conv2d(self, msg) -> None:
        self._record_output(msg["value"])

    def _record_output(self, value) -> None:
        if torch.is_tensor(value) and value.dim() >= 1:
            self.outputs.append((value.shape[0], value[:1].numel()))

    def _layer_op(self, msg, x, w, b, args) -> None:
        k, plain = self.num_samples, _WEIGHT_DIMS[msg["type"]]
        if msg["type"] == "linear" and x.dim() == 2 and w in self.per_object:
            shared = x.shape[0] == self.num_objects
            if not shared:
                _check_repeated(x, k)
            msg["value"], msg["done"] = _per_object_linear(x, w, b, k, shared, self.per_object), True
            return
        if w.dim() == plain:
            if b is None or b.dim() == 1:
                return  # a deterministic layer: the plain op on every row
            w = w.expand(k, *w.shape)  # a sampled bias on a deterministic weight
        if w.dim() != plain + 1 or w.shape[0] != k:
            raise ValueError(f"expected a {msg['type']} weight stacked as ({k}, ...), got shape {tuple(w.shape)}")
        if b is not None and b.dim() != 1 and b.shape != (k, w.shape[1]):
            out = w.shape[1]
            raise ValueError(f"expected a bias of shape ({out},) or stacked ({k}, {out}), got {tuple(b.shape)}")
        shared = k > 1 and x.shape[0] == self.num_objects  # one op with K·out outputs
        if shared and args.get("groups", 1) != 1:  # a grouped conv cannot interleave K·out channels
            x, shared = x.repeat_interleave(k, 0), False
        if not shared:
            _check_repeated(x, k)
        if msg["type"] == "linear":
            msg["value"] = (_shared_linear if shared else _stacked_linear)(x, w, b, k)
        else:
            msg["value"] = (_shared_conv2d if shared else _stacked_conv2d)(x, w, b, k, **args)
        msg["done"] = True
