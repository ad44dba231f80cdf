"""Functional checks of shellvae on a CUDA GPU (CI has none): the paths the CPU tests cannot reach.

Trains the synthetic mixture (make_gmm, 8 clusters, sigma^2 = 2 lambda_max, 10 epochs) on the GPU
with the shell method (eager, bf16 autocast, torch.compile in the default mode and with CUDA
graphs, memory-mapped input) and with
shell_lagrange, and checks each ends as the CPU run does: certified on held-out data, with a KL
within 50% of the CPU run's (the noise draws differ between devices). Also: a model saved from
the GPU loads on the CPU and encodes the same, and a run interrupted after 2 of 4 epochs and
resumed from its checkpoint ends with the uninterrupted run's parameters, bit for bit (this
check was added after the last GPU session: it has run on the CPU only). Prints one line per
check; exits 1 if any fails.

    python scripts/gpu_check.py               # --device cpu: a dry run of the script itself
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np
import torch

from shellvae import ShellVAE, make_gmm
from shellvae.training.methods import Method

COMMON = {"n_clusters": 8, "epochs": 10, "batch_size": 128, "random_state": 0}


def main() -> int:
    device = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    print(f"device: {torch.cuda.get_device_name() if device == 'cuda' else device}, torch {torch.__version__}")
    data = make_gmm(10_000, seed=1)
    failures = 0

    def check(name: str, ok: bool, detail: str) -> None:
        nonlocal failures
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)

    t0 = time.perf_counter()
    cpu = ShellVAE("shell", **COMMON).fit(data.X_train)
    cpu_kl = cpu.evaluate(data.X_test)["kl"]
    print(f"cpu reference: KL {cpu_kl:.3f}, certified {cpu.certify(data.X_test).certified} "
          f"({time.perf_counter() - t0:.1f} s)")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "X.npy")
        np.save(path, data.X_train)
        runs = {
            "shell": ("shell", data.X_train, {}),
            "shell amp": ("shell", data.X_train, {"amp": True}),
            "shell compile": ("shell", data.X_train, {"compile": True}),
            "shell compile reduce-overhead": ("shell", data.X_train, {"compile": "reduce-overhead"}),
            "shell memmap": ("shell", np.load(path, mmap_mode="r"), {}),
            "shell_lagrange": ("shell_lagrange", data.X_train, {}),
        }
        for name, (method, X, options) in runs.items():
            t0 = time.perf_counter()
            est = ShellVAE(method, device=device, **COMMON, **options).fit(X, X_val=data.X_test)
            metrics = est.evaluate(data.X_test)
            cert = est.certify(data.X_test, metrics=metrics)
            on_gpu = next(est.model_.parameters()).device.type == torch.device(device).type
            kl_ok = method != "shell" or abs(metrics["kl"] - cpu_kl) <= 0.5 * cpu_kl
            check(name, cert.certified and on_gpu and kl_ok and np.isfinite(est.history_[-1]["train_loss"]),
                  f"KL {metrics['kl']:.3f}, L_clu {metrics['l_clu']:.3f} vs delta {est.region_.delta_:.3f}, "
                  f"certified {cert.certified}, {est.history_[-1]['train_time_s']:.2f} s/epoch "
                  f"({time.perf_counter() - t0:.1f} s in all)")
            if name == "shell":
                saved = os.path.join(tmp, "model.pt")
                est.save(saved)
                loaded = ShellVAE.load(saved, device="cpu")
                same = np.allclose(loaded.transform(data.X_test), est.transform(data.X_test), atol=1e-4)
                check("save on GPU, load on CPU", same, "posterior means equal to 1e-4")
        # an interrupted GPU run resumed from its checkpoint ends where the uninterrupted run does
        # (the checkpoint keeps the GPU's random state: the latent noise is drawn there)
        ckpt = os.path.join(tmp, "resume.pt")
        params = {**COMMON, "epochs": 4}
        straight = ShellVAE("shell", device=device, **params).fit(data.X_train)
        original = Method.after_epoch

        def interrupt(self, row):  # dies in epoch 3: the checkpoint holds epoch 2
            if row["epoch"] == 3:
                raise KeyboardInterrupt
            original(self, row)

        Method.after_epoch = interrupt
        try:
            ShellVAE("shell", device=device, **params, checkpoint=ckpt).fit(data.X_train)
        except KeyboardInterrupt:
            pass
        finally:
            Method.after_epoch = original
        resumed = ShellVAE("shell", device=device, **params, checkpoint=ckpt, resume=True).fit(data.X_train)
        same = all(torch.equal(p, q) for p, q in zip(straight.model_.parameters(), resumed.model_.parameters()))
        check("resume on the GPU", same, "2 epochs + 2 resumed == 4 epochs, parameters bit for bit")
    print("all GPU checks passed" if not failures else f"{failures} GPU check(s) FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
