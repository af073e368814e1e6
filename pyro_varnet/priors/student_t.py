"""Student's t prior with vanishing degrees of freedom (VN eq. 9)."""

from __future__ import annotations

from ..distributions import StudentTPrior
from .base import Prior, register_prior


@register_prior("student-t")
class StudentT(Prior):
    r"""Standard Student's t prior :math:`\mathrm{St}(w \mid \nu)`: a proper prior whose KL to the
    Gaussian dropout posterior approaches the log-uniform one as ν → 0 (VN eq. 9-10, Fig. 2);
    its KL is estimated by Monte Carlo.

    :param float df: degrees of freedom ν > 0 (default 1e-16).
    """

    cacheable = True

    def __init__(self, df: float = 1e-16) -> None:
        if not df > 0:
            raise ValueError(f"expected degrees of freedom df > 0, got {df}")
        super().__init__()
        self.df = float(df)

    @classmethod
    def from_options(cls, scale: float = 1.0, df: float = 1e-16) -> StudentT:
        return cls(df)

    def distribution(self):
        # valid by construction: no argument validation (a host sync per construction on accelerators)
        return StudentTPrior(self.df, self.shape, like=self._like, validate_args=False).to_event(len(self.shape))
