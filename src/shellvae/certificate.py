"""The non-collapse certificate (docs/method.md §3, §6).

A constant decoder output a has, on the same held-out samples, L_clu >= ``collapse_floor`` (the
spread of the samples' own cluster centres; equal to delta on the training data). So held-out
L_clu < min(delta, collapse_floor) - eps proves the decoder output depends on the input: the
model is not collapsed. The margin eps is the certificate's own setting.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

#: the default certificate margin, as a share of delta: certified iff held-out L_clu is below the
#: collapse floor by more than 5% of delta, i.e. the decoder recovers more than 5% of the
#: between-cluster variance (cluster R^2 > 0.05). One bar for every method (docs/method.md §6).
CERTIFICATE_MARGIN = 0.05


@dataclass
class Certificate:
    """Whether held-out data proves the decoder output depends on the input.

    ``l_clu_shuffled`` is the control: decoding other samples' latents must lose the advantage.
    """

    W: float
    delta: float
    eps: float
    l_clu: float
    collapse_floor: float
    margin: float
    cluster_r2: float
    l_clu_shuffled: float
    kl: float
    active_units: int
    mutual_info: float
    cluster_accuracy: float
    feasible: bool
    certified: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        verdict = "CERTIFIED non-collapsed" if self.certified else "NOT certified"
        lines = [
            f"{verdict}",
            f"  feasible region [W, delta) = [{self.W:.4f}, {self.delta:.4f})  (eps = {self.eps:.4f})",
            f"  held-out L_clu = {self.l_clu:.4f}  (collapse floor {self.collapse_floor:.4f}, "
            f"margin delta - L_clu = {self.margin:+.4f}, cluster R^2 = {self.cluster_r2:.3f})",
            f"  shuffled-latent L_clu = {self.l_clu_shuffled:.4f}; KL = {self.kl:.3f} nats, "
            f"{self.active_units} active units, MI = {self.mutual_info:.3f} nats, "
            f"reconstructions in own cluster = {100 * self.cluster_accuracy:.1f}%",
        ]
        lines += [f"  - {r}" for r in self.reasons]
        return "\n".join(lines)


def certify(metrics: dict, region, eps: float | None = None) -> Certificate:
    """The verdict from held-out ``evaluate`` metrics and the run's ``FeasibleRegion``: certified iff
    the region is non-empty and L_clu < min(delta, collapse_floor) - eps (default eps:
    ``CERTIFICATE_MARGIN * delta``)."""
    W, delta = region.W_, region.delta_
    eps = CERTIFICATE_MARGIN * delta if eps is None else eps
    bar = min(delta, metrics["collapse_floor"]) - eps
    reasons = []
    if not region.feasible_:
        reasons.append(f"the feasible region is empty (W = {W:.4f} >= delta = {delta:.4f}): the guarantee does "
                       "not apply at this K; refit with more clusters (n_clusters='auto').")
    if metrics["l_clu"] >= bar:
        reasons.append(f"held-out L_clu = {metrics['l_clu']:.4f} is not below min(delta, collapse floor) - eps = "
                       f"{bar:.4f}: a constant (collapsed) decoder could do as well.")
    else:
        reasons.append(f"held-out L_clu = {metrics['l_clu']:.4f} < {bar:.4f}: no constant output reaches this, "
                       "so the decoder output depends on z.")
    if metrics["l_clu_shuffled"] <= metrics["l_clu"]:
        reasons.append("shuffling latents across samples does not worsen L_clu: the latent carries no cluster "
                       "information.")
    return Certificate(
        W=W, delta=delta, eps=eps, l_clu=metrics["l_clu"], collapse_floor=metrics["collapse_floor"],
        margin=metrics["margin"], cluster_r2=metrics["cluster_r2"], l_clu_shuffled=metrics["l_clu_shuffled"],
        kl=metrics["kl"], active_units=metrics["active_units"], mutual_info=metrics["mutual_info"],
        cluster_accuracy=metrics["cluster_accuracy"], feasible=bool(region.feasible_),
        certified=bool(region.feasible_ and metrics["l_clu"] < bar), reasons=reasons,
    )
