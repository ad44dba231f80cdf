"""The same vanilla VAE trained by pythae and by shellvae, side by side: time per epoch.

Fair by construction (the exact configuration is printed):
- the same data array (the GMM's shell data, 40,000 x 32; ``--datasets mnist`` adds MNIST's
  60,000 x 784 shell data), the same batch size (128), Adam with lr 1e-3, the same epochs;
- the same nets: encoder Linear(D,256)-ReLU-Linear(256,128)-ReLU-Linear(128,16) -> (mu, logvar),
  decoder Linear(8,128)-ReLU-Linear(128,256)-ReLU-Linear(256,D); both initialised from seed 0;
- the same objective: pythae's VAE with reconstruction_loss="mse" minimises
  0.5 ||x - xhat||^2 + KL per sample (batch mean); shellvae's "vanilla" with sigma2 = 1 and
  beta = 1 minimises ||x - xhat||^2 / (2 sigma2) + const + KL: the same gradients;
- pythae's own trainer (``BaseTrainer``: its DataLoader over ``BaseDataset``, its optimiser
  step, its per-step callbacks) against shellvae's loop (``train.train``); neither evaluates
  (pythae gets no eval set, shellvae no ``validate``) and neither checkpoints during the timed epochs.
- one process, one torch thread (``--threads``), the CPU (``--device cuda``: the GPU for both,
  pythae's ``no_cuda=False``; clocks read after ``torch.cuda.synchronize``); epochs interleaved (pythae, shellvae,
  pythae, ...) so that machine load hits both alike; the first epoch of each is a warm-up.

What is timed per epoch: ``BaseTrainer.train_step(epoch)`` (pythae's one pass over its
DataLoader) and one ``train(..., epochs=1)`` call (shellvae's pass, incl. its per-epoch means
and parameter check). A third contender, "shellvae (plain loop)", is shellvae with the unfused
Adam and without the subnormal flush: what the loop alone, without those two, is worth.
Also printed: whole ``BaseTrainer.train()`` runs (incl. pythae's per-epoch best-model copy and its
final save) against whole ``train()`` runs of the same epochs, interleaved, median of 3 each.

    pip install pythae==0.1.2 --no-deps && pip install imageio   # see docs/performance.md
    python bench/vs_pythae.py [--epochs 4] [--datasets gmm,mnist]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import platform
import statistics
import tempfile
import time

import numpy as np
import torch
from torch import nn

from shellvae import SphericalShell, get_method, load_dataset, make_gmm, mlp_vae
from shellvae.training import loop as train_module
from shellvae.training.batches import TrainData
from shellvae.training.methods import Objective
from shellvae.training.loop import train

HERE = os.path.dirname(os.path.abspath(__file__))
MNIST_DIR = os.path.join(HERE, "..", "..", "shared", "data", "mnist")


def pythae_vae(input_dim: int, latent_dim: int, reference: nn.Module):
    """pythae's VAE with custom nets whose weights are copied from shellvae's ``reference`` model."""
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.net = mlp([input_dim, 256, 128, 2 * latent_dim])

        def forward(self, x):
            mu, logvar = self.net(x).chunk(2, dim=-1)
            return ModelOutput(embedding=mu, log_covariance=logvar)

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = mlp([latent_dim, 128, 256, input_dim])

        def forward(self, z):
            return ModelOutput(reconstruction=self.net(z))

    encoder, decoder = Encoder(), Decoder()
    encoder.net.load_state_dict(reference.encoder.state_dict())
    decoder.net.load_state_dict(reference.decoder.state_dict())
    config = VAEConfig(input_dim=(input_dim,), latent_dim=latent_dim, reconstruction_loss="mse")
    return VAE(config, encoder=encoder, decoder=decoder)


def mlp(sizes):
    from shellvae.core.model import mlp as shellvae_mlp

    return shellvae_mlp(sizes)


def pythae_trainer(X: np.ndarray, reference: nn.Module, epochs: int, batch_size: int, lr: float, out_dir: str,
                   device: str = "cpu"):
    from pythae.data.datasets import BaseDataset
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    model = pythae_vae(X.shape[1], 8, reference)
    data = torch.as_tensor(X, dtype=torch.float32)
    config = BaseTrainerConfig(output_dir=out_dir, per_device_train_batch_size=batch_size, num_epochs=epochs,
                               learning_rate=lr, optimizer_cls="Adam", no_cuda=device == "cpu", seed=0,
                               steps_saving=None)
    return BaseTrainer(model, BaseDataset(data, torch.zeros(len(data))), training_config=config)


@contextlib.contextmanager
def plain_loop():
    """shellvae's loop with the unfused Adam and without flushing subnormals (the loop's optimiser is
    ``acceleration.adam``, looked up in ``shellvae.training.loop`` when ``train()`` runs)."""
    adam = train_module.adam
    train_module.adam = lambda model, lr: torch.optim.Adam(model.parameters(), lr=lr)
    try:
        yield
    finally:
        train_module.adam = adam


def sync(device: str) -> None:
    """Wait for the GPU's queued work, so the clock reads finished work."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def shellvae_epoch(model, data, epoch, batch_size, lr, plain):
    method = get_method("vanilla")
    objective = Objective(sigma2=1.0, beta=1.0)
    with plain_loop() if plain else contextlib.nullcontext():
        train(model, method, data, objective, epochs=1, batch_size=batch_size, lr=lr, seed=epoch, progress=False,
              flush_denormal=not plain)


def bench(name: str, X: np.ndarray, args) -> None:
    torch.manual_seed(0)
    reference = mlp_vae(X.shape[1])
    models = {"shellvae": mlp_vae(X.shape[1]), "shellvae (plain loop)": mlp_vae(X.shape[1])}
    for model in models.values():
        model.load_state_dict(reference.state_dict())
        model.to(args.device)
    data = TrainData.build(X, None, get_method("vanilla"), device=args.device)
    dev = args.device
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pythae_trainer(X, reference, args.epochs + 1, args.batch_size, args.lr, tmp, dev)
        with contextlib.redirect_stderr(io.StringIO()):
            trainer.prepare_training()
        times = {"pythae": [], **{k: [] for k in models}}
        for epoch in range(args.epochs + 1):
            sync(dev)
            t0 = time.perf_counter()
            with contextlib.redirect_stderr(io.StringIO()):  # pythae's per-step progress bar
                trainer.train_step(epoch + 1)
            sync(dev)
            t = time.perf_counter() - t0
            if epoch:
                times["pythae"].append(t)
            for label, model in models.items():
                sync(dev)
                t0 = time.perf_counter()
                shellvae_epoch(model, data, epoch, args.batch_size, args.lr, plain=label != "shellvae")
                sync(dev)
                if epoch:
                    times[label].append(time.perf_counter() - t0)

        # whole runs, interleaved (pythae, shellvae, pythae, shellvae): the median of --whole-repeats each
        whole = {"pythae": [], "shellvae": []}
        for _ in range(args.whole_repeats):
            torch.manual_seed(0)
            trainer = pythae_trainer(X, reference, args.whole_epochs, args.batch_size, args.lr, tmp, dev)
            sync(dev)
            t0 = time.perf_counter()
            with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
                trainer.train()
            sync(dev)
            whole["pythae"].append(time.perf_counter() - t0)
            model = mlp_vae(X.shape[1])
            model.load_state_dict(reference.state_dict())
            model.to(dev)
            t0 = time.perf_counter()
            train(model, get_method("vanilla"), data, Objective(sigma2=1.0), epochs=args.whole_epochs,
                  batch_size=args.batch_size, lr=args.lr, seed=0, progress=False)
            sync(dev)
            whole["shellvae"].append(time.perf_counter() - t0)
        whole = {k: statistics.median(v) for k, v in whole.items()}

    print(f"\n[{name}] {len(X)} x {X.shape[1]}, batch {args.batch_size}, Adam lr {args.lr}, latent 8, "
          f"nets {X.shape[1]}-256-128-16 / 8-128-256-{X.shape[1]}; median of {args.epochs} epochs after 1 warm-up")
    med = {k: statistics.median(v) for k, v in times.items()}
    for label, t in med.items():
        print(f"  {label:22s} {t:7.3f} s/epoch  {len(X) / t:9.0f} samples/s")
    for label in models:
        print(f"  pythae / {label}: time per epoch ratio {med['pythae'] / med[label]:.2f}")
    print(f"  whole run of {args.whole_epochs} epochs (median of {args.whole_repeats}): pythae BaseTrainer.train() "
          f"{whole['pythae']:.2f} s, shellvae train() {whole['shellvae']:.2f} s, "
          f"ratio {whole['pythae'] / whole['shellvae']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="gmm", help="comma-separated: gmm, mnist")
    ap.add_argument("--mnist-dir", default=MNIST_DIR)
    ap.add_argument("--epochs", type=int, default=4, help="timed epochs per trainer (after one warm-up)")
    ap.add_argument("--whole-epochs", type=int, default=2, help="epochs of the whole-run comparison")
    ap.add_argument("--whole-repeats", type=int, default=3, help="whole runs of each, interleaved")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (both libraries on it)")
    args = ap.parse_args()
    try:
        import pythae  # noqa: F401
    except ImportError:
        raise SystemExit("pythae is not installed: pip install pythae==0.1.2 --no-deps && pip install imageio "
                         "(see docs/performance.md; its other dependencies are shellvae's own)") from None
    logging.disable(logging.WARNING)  # pythae logs every epoch (its handlers hold the original streams)
    torch.set_num_threads(args.threads)
    from importlib.metadata import version

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
          f"torch {torch.__version__}, pythae {version('pythae')}, {torch.get_num_threads()} thread(s), device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""))
    for name in args.datasets.split(","):
        name = name.strip()
        raw = make_gmm(50_000, seed=0).X_train if name == "gmm" else load_dataset("mnist", args.mnist_dir).X_train
        X = SphericalShell().fit(raw).transform(raw).astype(np.float32)
        bench(name, X, args)


if __name__ == "__main__":
    main()
