"""Performance features: memory-mapped training data, the fused optimiser, compile / amp options."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shellvae import ClusterGeometry, ShellVAE, SphericalShell, get_method, make_gmm, mlp_vae
from shellvae.data import load_dataset
from shellvae.data.arrays import load_array
from shellvae.errors import DataError, ShellVAEError
from shellvae.training.acceleration import adam, denormals_flushed
from shellvae.training.batches import MemmapTrainData, TrainData
from shellvae.training.methods import Objective
from shellvae.core.region import FeasibleRegion
from shellvae.training.loop import train

RUN = dict(batch_size=64, lr=1e-3, seed=0, progress=False)


@pytest.fixture(scope="module")
def gmm():
    return make_gmm(2_500, seed=2)  # 2,000 train rows


@pytest.fixture
def npy(gmm, tmp_path):
    path = tmp_path / "train.npy"
    np.save(path, gmm.X_train)
    return path


def _fit_parts(X):
    shell = SphericalShell().fit(X)
    return shell, FeasibleRegion.from_fitted(ClusterGeometry(8).fit(shell.transform(X)), shell)


def _train(data, region, name, **kw):
    torch.manual_seed(0)
    model = mlp_vae(32)
    objective = Objective(sigma2=2 * region.geometry_.lambda_max_, region=region)
    history = train(model, get_method(name), data, objective, epochs=2, **{**RUN, **kw})
    return model, history


def _untimed(history):
    return [{k: v for k, v in row.items() if not k.endswith("_time_s")} for row in history]


@pytest.mark.parametrize("name", ["shell", "vanilla"])
def test_memmap_training_equals_in_memory_and_reads_batch_by_batch(gmm, npy, name):
    shell, region = _fit_parts(gmm.X_train)
    method = get_method(name)
    in_memory = TrainData.build(shell.transform(gmm.X_train), region, method)
    source = np.load(npy, mmap_mode="r")
    mapped = MemmapTrainData.build(source, region, method, read_rows=256)  # 4 batches of 64 per read
    rows_read = []
    original = shell.transform

    def spy(X):  # the shell transform sees one block of batches at a time, never the whole array
        rows_read.append(len(X))
        return original(X)

    shell.transform = spy
    a, ha = _train(in_memory, region, name)
    b, hb = _train(mapped, region, name)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)  # bit-identical: same rows, same order, same float32 rounding
    assert _untimed(ha) == _untimed(hb)
    assert isinstance(mapped.source, np.memmap) and mapped.source is source
    assert max(rows_read) == 256 and sum(rows_read) == 2 * len(gmm.X_train)


def test_memmap_rows_select_a_split_without_copying(gmm, npy):
    """``rows`` picks training rows out of the file (e.g. a random split) with no copy of the data."""
    rows = np.random.default_rng(0).permutation(len(gmm.X_train))[:1_500]
    shell, region = _fit_parts(gmm.X_train[rows])
    method = get_method("shell")
    a, _ = _train(TrainData.build(shell.transform(gmm.X_train[rows]), region, method), region, "shell")
    b, _ = _train(MemmapTrainData.build(np.load(npy, mmap_mode="r"), region, method, rows=rows),
                  region, "shell")
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_estimator_trains_from_a_memmap(gmm, npy):
    mapped = np.load(npy, mmap_mode="r")
    params = {"n_clusters": 8, "epochs": 2, "random_state": 0}
    a = ShellVAE("shell", **params).fit(gmm.X_train)
    b = ShellVAE("shell", **params).fit(mapped)
    for p, q in zip(a.model_.parameters(), b.model_.parameters()):
        assert torch.equal(p, q)
    assert isinstance(mapped, np.memmap)


def test_load_array_mmap_keeps_the_file_mapped(gmm, npy, tmp_path):
    data = load_array(npy, mmap=True, test_size=0.2)
    assert isinstance(data.X_train, np.memmap) and isinstance(data.X_test, np.memmap)
    np.testing.assert_array_equal(data.X_train, gmm.X_train[:1_600])  # contiguous split: first rows train
    np.testing.assert_array_equal(data.X_test, gmm.X_train[1_600:])
    assert "memory-mapped" in data.description and data.info["mmap"]
    assert load_dataset(str(npy), mmap=True).X_train.shape == (1_600, 32)

    bad = gmm.X_train.copy()
    bad[1_234, 5] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(DataError, match="row 1234, column 5"):
        load_array(tmp_path / "bad.npy", mmap=True)
    np.savez(tmp_path / "a.npz", X=gmm.X_train)
    with pytest.raises(DataError, match=".npy files only"):
        load_array(tmp_path / "a.npz", mmap=True)
    with pytest.raises(DataError, match="label_column"):
        load_array(npy, mmap=True, label_column=0)


def test_fused_adam_on_cpu_and_same_steps_as_plainadam():
    torch.manual_seed(0)
    model = mlp_vae(8)
    opt = adam(model, 1e-3)
    assert opt.defaults.get("fused") is True
    torch.manual_seed(0)
    plain_model = mlp_vae(8)
    plain = torch.optim.Adam(plain_model.parameters(), lr=1e-3)
    x = torch.randn(32, 8)
    for _ in range(20):
        for m, o in ((model, opt), (plain_model, plain)):
            o.zero_grad()
            torch.manual_seed(1)  # the same noise for both
            out = m(x)
            (out.xhat - x).pow(2).sum().backward()
            o.step()
    for p, q in zip(model.parameters(), plain_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)  # the same algorithm, another kernel


def test_amp_is_a_no_op_on_cpu(gmm):
    shell, region = _fit_parts(gmm.X_train)
    data = TrainData.build(shell.transform(gmm.X_train), region, get_method("shell"))
    a, ha = _train(data, region, "shell")
    b, hb = _train(data, region, "shell", amp=True)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert _untimed(ha) == _untimed(hb)
    assert "forward" not in vars(b)  # the model itself is never patched


def test_compile_wraps_forward_and_loss_for_the_run_only(gmm, monkeypatch):
    """compile=True hands the method's forward_loss (forward and loss terms) to torch.compile and
    restores it afterwards (the speed is measured by bench/throughput.py --compile, not here)."""
    compiled, modes = [], []

    def fake_compile(fn, mode=None):
        compiled.append(fn)
        modes.append(mode)
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    shell, region = _fit_parts(gmm.X_train[:500])
    method = get_method("vanilla")
    data = TrainData.build(shell.transform(gmm.X_train[:500]), region, method)
    torch.manual_seed(0)
    train(mlp_vae(32), method, data, Objective(sigma2=1.0), epochs=1, **RUN, compile=True)
    assert len(compiled) == 1 and compiled[0].__func__ is type(method).forward_loss
    assert "forward_loss" not in vars(method)  # nothing is attached to the method
    est = ShellVAE("em", n_clusters=8, epochs=1, compile=True).fit(gmm.X_train[:500])  # alternating steps too
    assert len(compiled) == 2 and est.get_params()["compile"] is True
    ShellVAE("shell", n_clusters=8, epochs=1, compile="reduce-overhead").fit(gmm.X_train[:500])
    assert modes == [None, None, "reduce-overhead"]  # a string is torch.compile's mode
    with pytest.raises(ShellVAEError, match="compile='fast'"):
        ShellVAE("shell", compile="fast").fit(gmm.X_train[:500])


def test_a_compiler_failure_warns_and_training_goes_on_eager(gmm, monkeypatch):
    """Seen on an H200 (torch 2.11): Triton failed to build one of the shell loss's fused kernels.
    A compiler failure must not lose the run: one warning, then the eager step, same parameters."""
    from torch._dynamo.exc import BackendCompilerFailed

    def broken_compile(fn, mode=None):
        def compiled(*args):
            exc = BackendCompilerFailed.__new__(BackendCompilerFailed)  # its __init__ differs across torch versions
            Exception.__init__(exc, "backend='inductor' raised:\nRuntimeError: PassManager::run failed")
            raise exc
        return compiled

    shell, region = _fit_parts(gmm.X_train[:500])
    data = TrainData.build(shell.transform(gmm.X_train[:500]), region, get_method("shell"))
    eager, _ = _train(data, region, "shell")
    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.warns(RuntimeWarning, match="torch.compile failed .*PassManager::run failed.*continues without"):
        fallback, _ = _train(data, region, "shell", compile=True)
    for p, q in zip(eager.parameters(), fallback.parameters()):
        assert torch.equal(p, q)


def test_compiled_loss_does_not_recompile_per_epoch(gmm):
    """The loss reads the epoch's schedule (KL ramp, stage), a value the loop computes before each
    epoch, never the epoch number: the graphs torch.compile builds do not grow with the epochs (with the
    epoch inside, it became a graph input and, under CUDA graphs, a new recording every epoch)."""
    from torch._dynamo.utils import counters

    shell, region = _fit_parts(gmm.X_train[:512])
    X = shell.transform(gmm.X_train[:512])
    graphs = {}
    for epochs in (3, 7):
        torch._dynamo.reset()
        before = counters["stats"]["unique_graphs"]
        method = get_method("shell", two_stage=0.3)  # a moving KL weight and a stage switch
        history = train(mlp_vae(32), method, TrainData.build(X, region, method),
                        Objective(sigma2=1.0, region=region), epochs=epochs, **{**RUN, "batch_size": 128},
                        compile=True)
        graphs[epochs] = counters["stats"]["unique_graphs"] - before
        assert len({row["kl_weight"] for row in history}) >= 3  # the schedule did move
    assert graphs[7] == graphs[3] <= 4, graphs


def test_compiled_step_trains_like_the_eager_step(gmm, monkeypatch):
    """A real torch.compile of the shell method's forward and loss: the same training to float rounding.

    Inductor draws random numbers with its own generator (seeded, but not eager's stream) unless
    ``fallback_random``; with it, the noise draws are eager's and only rounding differs."""
    import torch._inductor.config

    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)
    shell, region = _fit_parts(gmm.X_train[:640])
    data = TrainData.build(shell.transform(gmm.X_train[:640]), region, get_method("shell"))
    eager, h_eager = _train(data, region, "shell")
    compiled, h_compiled = _train(data, region, "shell", compile=True)
    for p, q in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-3, atol=1e-4)
    for key in ("train_loss", "train_l_clu", "train_l_n", "train_kl"):
        assert h_compiled[-1][key] == pytest.approx(h_eager[-1][key], rel=1e-3, abs=1e-5)


def test_denormals_are_flushed_while_training_and_the_mode_restored(gmm):
    
    seen = []
    method = get_method("vanilla")
    original = method.train_step

    def step(*args):
        seen.append(denormals_flushed())
        return original(*args)

    method.train_step = step
    X = SphericalShell().fit(gmm.X_train[:300]).transform(gmm.X_train[:300])
    assert not denormals_flushed()
    train(mlp_vae(32), method, TrainData.build(X, None, method), Objective(sigma2=1.0), epochs=1, **RUN)
    assert seen and all(seen) and not denormals_flushed()
    seen.clear()
    train(mlp_vae(32), method, TrainData.build(X, None, method), Objective(sigma2=1.0), epochs=1, **RUN,
          flush_denormal=False)
    assert seen and not any(seen)
    torch.set_flush_denormal(True)  # a caller's own setting survives training
    try:
        train(mlp_vae(32), method, TrainData.build(X, None, method), Objective(sigma2=1.0), epochs=1, **RUN)
        assert denormals_flushed()
    finally:
        torch.set_flush_denormal(False)
