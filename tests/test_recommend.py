"""The recommendation experiment's ranking and its generated sentences (experiments/recommend.py)."""

from __future__ import annotations

from shellvae.experiments.recommend import ranking, recommendation


def row(method, nll, certified, kl=1.0, active_units=None):
    return {"method": method, "nll_iw_mean": nll, "nll_iw_std": 0.01, "kl_mean": kl, "kl_std": 0.0,
            "active_units_mean": (0.0 if kl == 0 else 3.0) if active_units is None else active_units,
            "certified_auto_mean": certified, "certified_auto_n": 3}


def test_certified_in_every_seed_first_by_nll_then_the_rest():
    """Ranked by the auto-K certificate (one geometry for every method), not a method's own K."""
    rows = [row("vanilla", 15.1, 0.0, kl=0.0), row("shell", 15.5, 1.0), row("bn_vae", 15.3, 1.0),
            row("free_bits", 15.9, 1.0), row("em", 15.0, 2 / 3)]
    ranked = ranking(rows)
    assert [(rank, r["method"]) for rank, r in ranked] == [
        ("1", "bn_vae"), ("2", "shell"), ("3", "free_bits"), ("—", "em"), ("—", "vanilla")]


def test_recommendation_names_the_best_the_paper_method_and_the_baselines_that_beat_it():
    text = recommendation(ranking([row("shell", 15.5, 1.0), row("bn_vae", 15.3, 1.0), row("vanilla", 15.6, 0.0)]))
    assert text.startswith("Use `bn_vae`")
    assert "ranks 2 of 2" in text and "A simple baseline beats it: `bn_vae`." in text
    assert "uncertified" not in text  # the collapsed model is worse here: nothing to add


def test_recommendation_says_what_the_used_latent_costs_when_a_collapsed_model_fits_better():
    text = recommendation(ranking([row("shell", 15.54, 1.0), row("bn_vae", 15.28, 1.0),
                                   row("vanilla", 15.13, 0.0, kl=0.0)]))
    assert "An uncertified model has a lower nll_iw here (`vanilla`, 15.13 ± 0.01 nats, KL 0.000 ± 0.000)" in text
    assert "costs 0.15 nats of held-out likelihood" in text


def test_recommendation_when_nothing_is_certified():
    text = recommendation(ranking([row("vanilla", 15.1, 0.0), row("shell", 15.2, 1 / 3)]))
    assert text.startswith("No method is certified in every seed here")


def test_paper_method_not_certified_everywhere():
    text = recommendation(ranking([row("shell", 39.90, 1 / 3), row("bn_vae", 39.87, 1.0),
                                   row("free_bits", 40.43, 1.0)]))
    assert "is not certified in every seed here" in text
    # free_bits fits worse than shell (40.43 > 39.90): it does not 'beat' it, it is certified where shell is not
    assert "A simple baseline is certified where it is not: `bn_vae`, `free_bits`." in text
    assert "beats" not in text


def test_no_sentence_about_the_paper_method_when_it_was_not_run():
    text = recommendation(ranking([row("bn_vae", 15.3, 1.0), row("free_bits", 15.9, 1.0)]))
    assert text == "Use `bn_vae`: the best held-out likelihood among the methods certified in every seed (nll_iw " \
                   "15.30 ± 0.01 nats)."


def test_a_better_uncertified_model_that_uses_its_latent_is_not_called_a_collapse_price():
    text = recommendation(ranking([row("bn_vae", 15.3, 1.0), row("shell", 15.1, 2 / 3, kl=0.4)]))
    assert "`bn_vae` is 0.20 nats behind it, and certified where it is not." in text
    assert "costs" not in text


def test_a_diverged_seed_counts_as_not_certified():
    """Table rows come from flatten + aggregate: a seed whose training diverged has no model to certify, so
    the method is not 'certified in every seed' and its k/n counts every seed."""
    from shellvae.experiments.common import aggregate, certified_share

    def record(seed, status="ok"):
        cert = {"W": 0.2, "delta": 0.8, "l_clu": 0.3, "collapse_floor": 0.8, "l_clu_shuffled": 0.9,
                "cluster_r2": 0.6, "margin": 0.5, "kl": 1.0, "active_units": 3, "mutual_info": 0.5,
                "cluster_accuracy": 0.9}
        cell = {"dataset": "synthetic", "condition": "moderate", "method": "bn_vae", "seed": seed}
        if status != "ok":
            return {"cell": cell, "status": status}
        return {"cell": cell, "status": "ok", **cert, "nll_iw": 15.3, "certificate_auto": cert, "auto_n_clusters": 6}

    rows = aggregate([record(0), record(1), record(2, "diverged")], ["condition", "dataset", "method"])
    assert len(rows) == 1 and rows[0]["certified_auto_n"] == 3 and rows[0]["certified_auto_mean"] == 2 / 3
    assert certified_share(rows[0], "certified_auto") == "2/3 (1/3 diverged)"
    assert ranking(rows)[0][0] == "—"
