"""Feed-forward blocks with diffusers' names: ff.net.0.proj (+activation), ff.net.2."""
from __future__ import annotations

from kernels import runtime as _runtime

jt = _runtime.import_jittor()
from jittor import nn  # noqa: E402

from kernels import ops  # noqa: E402


class GELUProj(nn.Module):
    """Linear then GELU; the tanh form runs as one fused bias+GELU op. (..., Cin) -> (..., Cout)"""

    def __init__(self, dim_in: int, dim_out: int, approximate: str = "tanh", bias: bool = True):
        super().__init__()
        self.approximate = approximate
        self.proj = nn.Linear(dim_in, dim_out, bias=bias)

    def execute(self, x: jt.Var) -> jt.Var:
        if self.approximate == "tanh":
            h = nn.matmul_transpose(x, self.proj.weight)
            bias = self.proj.bias if self.proj.bias is not None else jt.zeros((h.shape[-1],))
            return ops.bias_gelu(h, bias)
        return nn.gelu(self.proj(x))  # exact erf GELU, as torch's default


class GEGLU(nn.Module):
    """Gated GELU: proj to 2*Cout, value * GELU(gate). (..., Cin) -> (..., Cout)"""

    def __init__(self, dim_in: int, dim_out: int, bias: bool = True):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2, bias=bias)

    def execute(self, x: jt.Var) -> jt.Var:
        value, gate = jt.chunk(self.proj(x), 2, dim=-1)
        return value * nn.gelu(gate)


ACTIVATIONS = ("gelu-approximate", "gelu", "geglu")


class FeedForward(nn.Module):
    """Transformer MLP (..., D) -> (..., D) with hidden width mult*D."""

    def __init__(self, dim: int, activation_fn: str = "gelu-approximate", mult: int = 4, bias: bool = True):
        super().__init__()
        inner = dim * mult
        if activation_fn == "gelu-approximate":
            act = GELUProj(dim, inner, "tanh", bias)
        elif activation_fn == "gelu":
            act = GELUProj(dim, inner, "none", bias)
        elif activation_fn == "geglu":
            act = GEGLU(dim, inner, bias)
        else:
            raise ValueError(f"activation_fn {activation_fn!r} not supported (one of {', '.join(ACTIVATIONS)})")
        # index 1 is dropout in diffusers (no parameters); kept so the output layer is net.2
        self.net = nn.ModuleList([act, nn.Identity(), nn.Linear(inner, dim, bias=bias)])

    def execute(self, x: jt.Var) -> jt.Var:
        return self.net[2](self.net[0](x))
