"""Student's t prior with vanishing degrees of freedom, a proper log-uniform analogue."""

from __future__ import annotations

import torch
from pyro.distributions import StudentT


class StudentTPrior(StudentT):
    r"""Standard Student's t prior :math:`\mathrm{St}(w \mid \nu)` with tiny :math:`\nu`.

    As :math:`\nu \to 0` its KL to the Gaussian dropout posterior approaches the
    log-uniform one up to a constant (VN Fig. 2), while the prior stays proper. No KL is
    registered for it, so Pyro's ``TraceMeanField_ELBO`` estimates it with one Monte Carlo
    sample, as the paper does.

    :param float df: degrees of freedom :math:`\nu > 0` (default ``1e-16``).
    :param torch.Size batch_shape: shape of the independent weights.
    :param like: a tensor whose device and dtype the parameters take (default CPU, default dtype).

    **References**: VN eq. 9-10.
    """

    def __init__(
        self,
        df: float = 1e-16,
        batch_shape: torch.Size | tuple = (),
        validate_args: bool | None = None,
        like: torch.Tensor | None = None,
    ) -> None:
        if not df > 0:
            raise ValueError(f"expected degrees of freedom df > 0, got {df}")
        shape = torch.Size(batch_shape)
        like = torch.zeros(()) if like is None else like
        df_t = like.new_full((), float(df)).expand(shape)
        zero, one = like.new_zeros(()).expand(shape), like.new_ones(()).expand(shape)
        super().__init__(df_t, zero, one, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> StudentTPrior:
        new = self._get_checked_instance(StudentTPrior, _instance)
        return super().expand(batch_shape, _instance=new)
