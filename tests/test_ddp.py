"""Data-parallel training (DDP): 2 CPU processes with the gloo backend against one process.

One spawn of two ranks runs these checks (process start-up dominates the cost):
- exactness: with the latent noise switched off (z = mu), vanilla, shell, shell_lagrange and
  free_bits VAEs trained by 2 ranks on shards of each global batch reach the single-process
  parameters. DDP averages the two shard gradients, which is the gradient of the global batch
  mean; the shell's boundary penalty and free bits' floor, nonlinear in a batch mean, are
  exact through ``distributed.global_batch_mean``, and the Lagrange multiplier stays in step;
- the real thing: the shell method with noise, through ``ShellVAE`` (geometry fitted on rank 0
  and broadcast, held-out metrics on rank 0, only rank 0 writing the checkpoint) ends with the
  same metrics as one process within a stated tolerance;
- a method that cannot run under DDP fails with a clear error on every rank.
A second test runs the documented entry point, ``torchrun --nproc_per_node 2 -m shellvae train --distributed``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from shellvae import ShellVAE, get_method, make_gmm, mlp_vae
from shellvae.errors import ShellVAEError
from shellvae.training.batches import TrainData
from shellvae.training.methods import Objective
from shellvae.core.region import FeasibleRegion
from shellvae.training.loop import train

EPOCHS, BATCH = 5, 100  # 4,000 rows: 40 global batches of 100 = 2 shards of 50 an epoch
SHELL = {"n_clusters": 8, "epochs": EPOCHS, "batch_size": BATCH, "random_state": 0}


def _data():
    return make_gmm(5_000, seed=3)  # 4,000 train / 1,000 test


#: methods checked for exactness, with settings that keep their batch-level terms active: the
#: boundary penalty (L_clu starts far above delta - eps), a multiplier that grows, a floor above the KL
EXACT = {"vanilla": {}, "shell": {}, "shell_lagrange": {"alpha": 0.9},
         "free_bits": {"free_bits": 2.0}}


def _deterministic(name: str, X: np.ndarray) -> tuple[list[torch.Tensor], list[dict], dict]:
    """30 steps on 1,000 rows (rounding differences grow with the steps: keep the comparison short)."""
    from shellvae.core.geometry import ClusterGeometry

    X = X[:1_000]
    torch.manual_seed(0)
    model = mlp_vae(X.shape[1])
    model.reparameterize = lambda mu, logvar: mu  # no noise: the ranks' draws cannot differ
    method = get_method(name, **EXACT[name])
    region = FeasibleRegion.from_fitted(ClusterGeometry(8).fit(X)) if method.needs_centers else None
    history = train(model, method, TrainData.build(X, region, method), Objective(sigma2=0.5, region=region), epochs=3,
                    batch_size=BATCH, lr=1e-3, seed=0, progress=False)
    return [p.detach().clone() for p in model.parameters()], history, method.state_dict()


def _worker(rank: int, rendezvous: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    # a file rendezvous: no port to pick, so no race with other processes for it
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2)
    try:
        data = _data()
        exact = {name: _deterministic(name, data.X_train) for name in EXACT}
        est = ShellVAE("shell", checkpoint=os.path.join(out_dir, "ckpt.pt"), **SHELL).fit(data.X_train,
                                                                                         X_val=data.X_test)
        try:
            method = get_method("aggressive")
            train(mlp_vae(32), method, TrainData.build(data.X_train, None, method), Objective(sigma2=1.0), epochs=1,
                  batch_size=BATCH, lr=1e-3, seed=0, progress=False)
            error = None
        except ShellVAEError as exc:
            error = str(exc)
        torch.save({"exact": exact, "shell_history": est.history_, "error": error,
                    "W": est.W_, "delta": est.delta_}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(out / "rendezvous"), str(out)), nprocs=2, join=True)
    return out, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.mark.parametrize("name", list(EXACT))
def test_ddp_step_equals_the_global_batch_step(ddp_results, name):
    _, ranks = ddp_results
    params, history, state = _deterministic(name, _data().X_train)
    for rank in ranks:  # both ranks hold the same parameters, equal to one process's
        r_params, r_history, r_state = rank["exact"][name]
        for p, q in zip(params, r_params):
            # Adam divides by sqrt(v): where a gradient is ~0 the rounding of the shard sums moves a weight a
            # little (measured: up to 1e-6, 1e-4 for shell). Computing L_b, the multiplier's constraint and the
            # free-bits floor per shard instead moves weights by 1.2e-2 to 2.4e-2; another batch order by 4e-2.
            torch.testing.assert_close(q, p, rtol=1e-3, atol=1e-3)
        for a, b in zip(history, r_history):  # the logs are reduced over ranks: the global batch means
            for key in a:
                if key.startswith("train_") and not key.endswith("_time_s"):
                    assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
        for key, value in state.items():  # the Lagrange multiplier and its average
            assert r_state[key] == pytest.approx(value, rel=1e-4), key
    # the batch-level terms were active, so a per-shard computation would not have matched
    last = history[-1]
    if name == "shell":
        assert history[0]["train_l_b"] > 1e-3
    if name == "shell_lagrange":
        assert state["multiplier"] > 0.1
    if name == "free_bits":
        assert last["train_kl_term"] > last["train_kl"] + 0.1


def test_ddp_shell_matches_single_process(ddp_results):
    out, ranks = ddp_results
    data = _data()
    single = ShellVAE("shell", **SHELL).fit(data.X_train, X_val=data.X_test)
    r0, r1 = ranks
    assert r0["W"] == single.W_ and r0["delta"] == single.delta_  # geometry of rank 0, broadcast
    assert r1["W"] == r0["W"] and r1["delta"] == r0["delta"]
    untimed = [[{k: v for k, v in row.items() if not k.endswith("_time_s")} for row in r["shell_history"]]
               for r in ranks]
    assert untimed[0] == untimed[1]  # reduced logs and broadcast metrics: one history on every rank
    assert (out / "ckpt.pt").exists() and not list(out.glob(".ckpt.pt.*"))
    a, b = single.history_[-1], r0["shell_history"][-1]
    # The runs differ in the noise draws (rank 1 draws its own), so the tolerance is the spread of single-process runs over seeds 0-3
    # on these data (measured: train_loss 15.62-15.66, val_l_clu 0.27-0.31, val_kl 0.57-0.74,
    # val_recon_mse 0.014-0.016, cluster accuracy >= 0.999, 8 active units).
    assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.01)
    assert b["val_l_clu"] == pytest.approx(a["val_l_clu"], abs=0.06)
    assert b["val_kl"] == pytest.approx(a["val_kl"], rel=0.35)
    assert b["val_recon_mse"] == pytest.approx(a["val_recon_mse"], rel=0.25)
    assert b["val_cluster_accuracy"] >= 0.99 and b["val_active_units"] == a["val_active_units"] == 8
    assert b["val_l_clu"] < r0["delta"]  # certified, as the single-process run is


def test_ddp_refuses_unsupported_methods_clearly(ddp_results):
    _, ranks = ddp_results
    for rank in ranks:
        assert rank["error"] is not None and "'aggressive' does not support distributed" in rank["error"]


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH")
def test_torchrun_entry_point_trains_and_only_rank0_writes(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = ["torchrun", "--nproc_per_node", "2", "--master_port", str(_free_port()), "-m", "shellvae",
           "train", "--distributed", "--data", "synthetic", "--n-train", "1000", "--n-test", "250", "--epochs", "2",
           "--batch-size", "100", "--n-clusters", "8", "--quiet", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("wrote ") == 1  # rank 0 reports; rank 1 stays silent
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "shell" and metrics["epochs"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "history.csv", "metrics.json", "model.pt",
                                                     "run.json"]  # rank 0's manifest (issue 25), written once


def test_distributed_helpers_are_no_ops_in_one_process():
    from shellvae.base import distributed

    assert distributed.info() is None and distributed.is_main_process()
    assert distributed.run_once(lambda x: x + 1, 1) == 2
    t = torch.arange(4.0)
    assert distributed.all_reduce_mean(t) is t and torch.equal(distributed.shard(t, None), t)
    state = distributed.DistInfo(rank=1, world_size=2, local_rank=1)
    assert distributed.shard(torch.arange(5), state).tolist() == [3, 4]
    assert distributed.shard(torch.arange(1), state) is None  # fewer rows than ranks: skipped everywhere
    with pytest.raises(ShellVAEError, match="does not support distributed"):
        distributed.check_method(get_method("em"))
    distributed.check_method(get_method("shell"))
