"""ELBO decomposition and reports, ArviZ export, comparison tables and the papers' figures."""

from .elbo import elbo_decomposition
from .inference_data import LOG_ALPHA_CLIP, as_trace
from .plots import (
    kl_student_t_quadrature,
    layer_samples,
    plot_activation_levels,
    plot_bottleneck,
    plot_elbo_decomposition,
    plot_kl_priors,
    plot_phase_transition,
    plot_prior_phase_transitions,
    plot_reliability,
    plot_sample_accuracies,
)
from .pruning import plot_prune_curve, prune_curve
from .report import (
    VN_TABLE1,
    VN_TABLE1_RECIPE,
    ELBOReport,
    compare,
    elbo_report,
    ic_diagnostics,
    mmd_bound,
    vn_table1_column,
)
from .weightnorm import plot_weightnorm_posteriors, structured_sparsity, weightnorm_posteriors

__all__ = [
    "ELBOReport",
    "VN_TABLE1",
    "VN_TABLE1_RECIPE",
    "LOG_ALPHA_CLIP",
    "as_trace",
    "ic_diagnostics",
    "plot_elbo_decomposition",
    "compare",
    "elbo_decomposition",
    "elbo_report",
    "kl_student_t_quadrature",
    "layer_samples",
    "mmd_bound",
    "plot_activation_levels",
    "plot_bottleneck",
    "plot_kl_priors",
    "plot_phase_transition",
    "plot_prior_phase_transitions",
    "plot_prune_curve",
    "plot_reliability",
    "plot_sample_accuracies",
    "plot_weightnorm_posteriors",
    "prune_curve",
    "structured_sparsity",
    "vn_table1_column",
    "weightnorm_posteriors",
]
