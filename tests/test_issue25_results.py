"""Issue 25's cases whose right outcome is a result, not an error (the errors are rows of the table in
docs/reliability.md, from ``tests/reliability_issue25.py``): the documented Python API taking the arrays
it documents, diagnose agreeing with fit on repeated rows, advice that fits the failure, damaged
reproduction cells trained again, warnings naming the user's line.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from shellvae import ShellVAE, certify_model, make_gmm
from shellvae.cli import main
from shellvae.cli.inputs import memory_advice
from shellvae.evaluation.diagnose import diagnose
from shellvae.errors import EmptyFeasibleRegionWarning, ShellVAEError

pytestmark = pytest.mark.filterwarnings("ignore:The feasible region is empty")


@pytest.fixture(scope="module")
def fitted():
    X = make_gmm(600, n_features=8, seed=0).X_train
    return X, ShellVAE("shell", n_clusters=4, epochs=2, latent_dim=2, progress=False).fit(X)


def test_region_methods_take_the_numpy_arrays_and_numbers_they_are_documented_with(fitted):
    X, est = fitted
    region = est.region_
    rows = region.transform(X)  # NumPy, float64
    centers = region.centers(x=rows)  # was: 'numpy.ndarray' object has no attribute 'to'
    assert torch.equal(centers, region.centers(x=torch.as_tensor(rows, dtype=torch.float32)))
    loss = region.cluster_loss(rows, centers.numpy())  # was: 'int' object is not callable
    assert float(loss) == pytest.approx(float(region.cluster_loss(torch.as_tensor(rows, dtype=torch.float32),
                                                                  centers)), rel=1e-6)
    inside = 0.5 * (region.W_ + region.delta_)
    assert float(region.boundary_penalty(inside, 0.0)) == 0.0  # was: 'float' object has no attribute 'detach'
    assert float(region.boundary_penalty(region.delta_ + 1.0, 0.0)) > 0


def test_diagnose_on_repeated_rows_warns_and_stops_at_the_distinct_rows_as_fit_does():
    X = np.repeat(np.random.default_rng(0).normal(size=(3, 5)), 700, axis=0)
    with pytest.warns(UserWarning, match="only 3 distinct rows"):
        result = diagnose(X, max_samples=None)
    assert [row["K"] for row in result.sweep] == [2, 3]  # was K = 3..512, "non-empty", W = 0
    with pytest.raises(Exception, match="distinct"):
        ShellVAE(n_clusters=4, epochs=1).fit(X)  # fit refuses a K above the distinct rows: diagnose lists none


def test_out_of_memory_advice_names_the_allocation_and_what_shrinks_it():
    covariance = "Unable to allocate 74.5 GiB for an array with shape (100000, 100000) and data type float64"
    advice = memory_advice(covariance)
    assert "100,000 x 100,000 covariance" in advice and "features" in advice and "--latent-dim" in advice
    assert "do not shrink it" in advice  # not the options that cannot help
    assert "--batch-size" in memory_advice("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB")


def test_a_network_too_large_for_memory_names_its_hidden_sizes_and_the_option():
    X = make_gmm(200, n_features=8, seed=0).X_train
    with pytest.raises(ShellVAEError, match=r"encoder_hidden=\(1000000000000,\).*smaller encoder_hidden"):
        ShellVAE("vanilla", encoder_hidden=(10**12,), epochs=1, progress=False).fit(X)


def test_diagnose_help_lists_only_the_inputs_diagnose_takes():
    text = " ".join(CliRunner().invoke(main, ["diagnose", "--help"]).output.split())
    assert ".npy" in text and "token sequences" not in text and ".txt" not in text
    assert "token sequences" in " ".join(CliRunner().invoke(main, ["train", "--help"]).output.split())


def test_certify_model_hints_at_space_data_for_a_data_space_vae(fitted):
    X, est = fitted
    model, shell = est.model_, est.shell_

    def encode(x):  # a VAE of data-space rows, as certify_model(space="data") takes it
        return model.encode(torch.as_tensor(shell.transform(x.numpy()), dtype=torch.float32))

    def decode(z):
        return torch.as_tensor(shell.inverse_transform(model.decode(z).detach().numpy()), dtype=torch.float32)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cert = certify_model(encode, decode, X, shell=shell, geometry=est.geometry_)  # space="shell" by default
    assert not cert.certified and any("space='data'" in reason for reason in cert.reasons)


def test_warnings_name_the_users_line_not_shellvaes(fitted):
    X, _ = fitted
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ShellVAE(n_clusters=2, epochs=1, progress=False).fit(np.repeat(X[:100], 4, axis=0))  # this line
    ours = [w for w in caught if issubclass(w.category, (EmptyFeasibleRegionWarning, UserWarning))
            and ("distinct rows" in str(w.message) or "feasible region is empty" in str(w.message))]
    assert ours and all(w.filename == __file__ for w in ours), [(w.filename, w.lineno) for w in ours]


@pytest.mark.parametrize("damage", ["[1, 2, 3]", "delta", "[" * 100_000 + "]" * 100_000])
def test_a_damaged_reproduction_cell_is_trained_again_with_a_warning(tmp_path, damage):
    from shellvae.experiments import cells as cells_mod
    from shellvae.experiments import get_profile
    from shellvae.experiments.common import RunContext

    profile = replace(get_profile("test"), sizes={"default": (200, 80), "synthetic": (300, 100)},
                      epochs={"default": 1})
    cell = RunContext("table1", profile, ["synthetic"], [0], tmp_path).cell("synthetic", "moderate", "vanilla", 0)
    path = cells_mod.cell_path(tmp_path, cell)
    path.parent.mkdir(parents=True)
    if damage == "delta":  # a record of this cell whose delta is a list (was: a TypeError in the tables)
        damage = json.dumps({"key": cell.key, "W": 0.1, "delta": [1]})
    path.write_text(damage)
    with pytest.warns(UserWarning, match="the cell is trained again"):
        assert cells_mod.load_cell(tmp_path, cell) is None


def test_unk_in_a_text_file_is_a_word_and_reads_as_unknown(tmp_path):
    from shellvae.data.sequences import UNK
    from shellvae.data.text import load_text

    (tmp_path / "t.txt").write_text("\n".join(["a <unk> b", "a b c", "b c a", "c a b"] * 5) + "\n")
    data = load_text(tmp_path / "t.txt", test_size=0.25)
    assert (data.X_train == UNK).any() or (data.X_test == UNK).any()


def test_a_sequence_model_file_is_checked_as_a_shellvae_one(tmp_path):
    from shellvae import ShellVAEError
    from shellvae import SequenceVAE, make_topic_corpus
    from tests.test_run_folder import flip_one_byte_inside_a_tensor

    corpus = make_topic_corpus(200, 50, n_topics=4, vocab_size=10, length=8, support=2, seed=0)
    est = SequenceVAE("shell", latent_dim=4, embed_dim=8, hidden_dim=16, epochs=1, batch_size=64, n_clusters=4,
                      language_model=False, progress=False).fit(corpus.X_train, vocab=corpus.vocab)
    est.save(tmp_path / "m.pt")
    flip_one_byte_inside_a_tensor(tmp_path / "m.pt", tmp_path / "flipped.pt")
    with pytest.raises(ShellVAEError, match="fails its checksum"):
        SequenceVAE.load(tmp_path / "flipped.pt")
    for name, edit, names in [
        ("k.pt", lambda r: r["params"].update(n_clusters="abc"), "n_clusters"),
        ("labels.pt", lambda r: r["region"]["geometry"].update(
            labels_=torch.full_like(r["region"]["geometry"]["labels_"], 99)), "labels_"),
    ]:
        record = torch.load(tmp_path / "m.pt", weights_only=True)
        if name == "labels.pt" and record["region"] is None:
            continue
        edit(record)
        torch.save(record, tmp_path / name)
        with pytest.raises(ShellVAEError, match=names):
            SequenceVAE.load(tmp_path / name)
