"""The nine benchmark metrics by name: their order, direction and labels in the papers' tables, without torch.

The sweep layer (the sweep driver, Ray's trial runners, the sweep file checks) needs only these facts, in
processes that never score a map; importing torch there would cost each of them two seconds of CPU. The metrics
themselves, built on these names: :mod:`salnet.metrics`.
"""

# salnet.metrics.METRICS' order
METRIC_NAMES = ("auc_judd", "auc_borji", "sauc", "nss", "cc", "sim", "kld", "emd", "ig")
LOWER_IS_BETTER = frozenset({"kld", "emd"})  # distances; every other metric is a similarity or a score
# the metrics' labels and column order in the papers' tables (SalGAN table 2, Bruckert et al. table 3)
PAPER_COLUMNS = {"auc_judd": "AUC-J", "sauc": "sAUC", "auc_borji": "AUC-B", "nss": "NSS", "cc": "CC",
                 "sim": "SIM", "kld": "KLD", "emd": "EMD", "ig": "IG"}


def higher_is_better(name: str) -> bool:
    """Whether a higher value of metric ``name`` (one of :data:`METRIC_NAMES`) is better."""
    return name not in LOWER_IS_BETTER
