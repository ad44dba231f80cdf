"""Run folders are owned: what ``shellvae train`` (or ``train-text``) writes into ``--out`` belongs to one run.

A run claims its folder before reading data: a lock (``flock`` on the folder itself, released by the
system when the process ends, so a killed run leaves no stale lock) refuses a second run on the same
folder while the first is writing; a folder that already holds a run's files is refused unless the
command says ``--resume`` (continue that run) or ``--overwrite`` (replace it). Once the data is read,
the run writes its manifest, ``run.json`` (method, parameters, data fingerprint, seed, code version,
the files it writes), before any other file; ``--resume`` compares it with the stored one and refuses
any difference but ``--epochs``, naming each, so a checkpoint is never continued by another run.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np

from shellvae.base import storage
from shellvae.base.storage import data_fingerprint  # noqa: F401 (run folders' name for it)
from shellvae.errors import ShellVAEError

MANIFEST = "run.json"
#: every file a run of 'shellvae train' may write into its folder (with --show: the two images)
RUN_OUTPUTS = {MANIFEST, "metrics.json", "history.csv", "model.pt", "checkpoint.pt", "reconstructions.png",
               "samples.png"}
FORMAT = "shellvae-run"
VERSION = 1
#: manifest fields a resumed run may change: training longer, and how progress is shown. The data's
#: paths are compared through the fingerprint of the data they hold (a moved file is the same data).
MAY_DIFFER_ON_RESUME = {"params.epochs", "params.progress", "data_spec.data", "data_spec.data_dir"}


def code_version() -> str:
    from shellvae import __version__

    return __version__


def jsonable(value):
    """Parameters as JSON writes and reads them back (tuples become lists), for a fair comparison."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if isinstance(o, np.generic) else repr(o)))


def manifest(command: str, method: str, params: dict, data_spec: dict, fingerprint: str, seed, files) -> dict:
    return jsonable({"format": FORMAT, "version": VERSION, "command": command, "method": method, "params": params,
                     "data_spec": data_spec, "data_fingerprint": fingerprint, "seed": seed,
                     "code_version": code_version(), "files": sorted(files)})


def read_manifest(folder: Path) -> dict | None:
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ShellVAEError(f"{path}: not a readable run manifest ({type(exc).__name__}); the folder's run cannot "
                            "be checked. Give --overwrite to replace that run, or another --out.") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ShellVAEError(f"{path} is not a shellvae run manifest; give another --out (this file is not ours).")
    return record


def _flat(record: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flat(value, name + "."))
        else:
            out[name] = value
    return out


#: fields that repeat another (the method and seed are named once, at the top)
REPEATED = {"params.method", "params.random_state", "data_spec.seed", "files"}


def differences(stored: dict, new: dict) -> list[str]:
    """Each field (dotted name) that differs between two manifests, but those a resume may change."""
    a, b = _flat(stored), _flat(new)
    diffs = []
    for key in sorted(a.keys() | b.keys()):
        if key in MAY_DIFFER_ON_RESUME | REPEATED or a.get(key) == b.get(key):
            continue
        if key == "data_fingerprint":
            diffs.append(f"the data (fingerprint {str(a.get(key))[7:19]}... in the folder's run, "
                         f"{str(b.get(key))[7:19]}... now)")
        else:
            diffs.append(f"{key}: {a.get(key, '(absent)')!r} in the folder's run, {b.get(key, '(absent)')!r} now")
    return diffs


def describe(record: dict | None) -> str:
    if not record:
        return "a run without a manifest"
    return f"a {record.get('method')!r} run, seed {record.get('seed')}, shellvae {record.get('code_version')}"


@contextlib.contextmanager
def folder_lock(folder: Path):
    """Hold an exclusive lock on ``folder`` for the block; refuse at once if another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; the ownership checks still apply
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ShellVAEError(f"{folder}: another shellvae run is writing to this folder now. Wait for it to "
                                "finish, or give another --out.") from None
        yield
    finally:
        os.close(fd)  # releases the lock


class Claim:
    """A folder claimed by one run: ``begin(manifest)`` once the data is read, before any other write."""

    def __init__(self, folder: Path, names, resume: bool, overwrite: bool, resumable: bool = True):
        self.folder, self.names, self.resume, self.overwrite = Path(folder), tuple(names), resume, overwrite
        self.resumable = resumable  # the command has --resume (train-text keeps no checkpoint: it has not)
        self.previous = read_manifest(self.folder)
        self.begun = False

    def existing(self) -> list[str]:
        """The files of a run in the folder: this run's names and those the folder's manifest lists, but only
        names a run writes (an edited manifest cannot make --overwrite remove the user's own files)."""
        listed = (self.previous or {}).get("files") or []
        names = dict.fromkeys([MANIFEST, *self.names, *(n for n in listed if isinstance(n, str) and n in RUN_OUTPUTS)])
        return [n for n in names if _is_plain_name(n) and (self.folder / n).is_file()]

    def check(self) -> None:
        """Before any data is read: the folder may hold no other run, unless resumed or overwritten."""
        if self.resume and self.overwrite:
            raise ShellVAEError("--resume and --overwrite exclude each other: continue the folder's run, or "
                                "replace it.")
        existing = self.existing()
        if not existing:
            return
        if self.overwrite:
            for name in existing:
                if not os.access(self.folder / name, os.W_OK):
                    raise ShellVAEError(f"{self.folder / name} is read-only: --overwrite replaces no file that was "
                                        "protected. Make it writable or remove it yourself, or give another --out.")
            return
        if self.resume and self.previous is not None:
            return
        if self.resume:
            raise ShellVAEError(f"{self.folder} holds {', '.join(existing)} but no {MANIFEST}, so its run cannot be "
                                "checked to be this one: --resume refused. Give --overwrite to start it again, or "
                                "another --out.")
        choices = "--resume to continue it, --overwrite to replace it" if self.resumable else "--overwrite to replace it"
        raise ShellVAEError(f"{self.folder} holds {describe(self.previous)} ({', '.join(existing)}). Give {choices}, "
                            "or another --out.")

    def begin(self, record: dict) -> None:
        """Compare with the folder's run (``--resume``), remove the replaced run's files (``--overwrite``),
        then write the manifest: the first file of this run."""
        if self.resume and self.previous is not None:
            diffs = differences(self.previous, record)
            if diffs:
                raise ShellVAEError(f"--resume: {self.folder} holds another run; it differs in "
                                    + "; ".join(diffs) + ". Only --epochs may change on --resume: give the run's own "
                                    "settings, or --overwrite to replace it, or another --out.")
        if self.overwrite:
            for name in self.existing():
                (self.folder / name).unlink()
        storage.write_json(self.folder / MANIFEST, record)
        self.begun = True

    def abandon(self) -> None:
        """A run that failed before writing anything but its manifest leaves nothing to protect."""
        if self.begun and self.existing() == [MANIFEST]:
            with contextlib.suppress(OSError):
                (self.folder / MANIFEST).unlink()


def _is_plain_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")


def run_params(est) -> dict:
    """An estimator's parameters as a manifest records them: not where it checkpoints, nor whether it resumes
    (the folder and the command say that), nor code (the user's own networks are named by their class)."""
    params = {k: v for k, v in est.get_params().items() if k not in ("checkpoint", "resume", "encoder", "decoder")}
    for key in ("encoder", "decoder"):
        module = getattr(est, key, None)
        if module is not None:
            params[key] = type(module).__name__
    return params


def begin_train(run, est, spec: dict, dataset, names, command: str = "train") -> None:
    """``run.begin`` with the manifest of ``shellvae train`` (or ``train-text``): ``est`` (its parameters set),
    the data spec and the data read from it (its fingerprint), the files the run writes."""
    run.begin(manifest(command, est.method if isinstance(est.method, str) else type(est.method).__name__,
                       run_params(est), spec, data_fingerprint(dataset.X_train, dataset.X_test), est.random_state,
                       names))


class _Unclaimed:
    """For the processes that write nothing (DDP ranks other than 0)."""

    def begin(self, record: dict) -> None:
        pass


@contextlib.contextmanager
def claim(folder, names, *, resume: bool = False, overwrite: bool = False, active: bool = True,
          resumable: bool = True):
    """Lock ``folder`` and check it holds no other run (see ``Claim.check``) for the block; ``resumable``:
    the command has ``--resume`` (its refusal offers it)."""
    if not active:
        yield _Unclaimed()
        return
    folder = Path(folder)
    with folder_lock(folder):
        owned = Claim(folder, names, resume, overwrite, resumable)
        owned.check()
        try:
            yield owned
        except BaseException:
            owned.abandon()
            raise


# --------------------------------------------------------------------------- single output files
#: what an output file of ``summarize`` / ``diagnose`` may replace: an earlier output of the same command
_REPLACEABLE = {
    "table": ("a Markdown table written by 'shellvae summarize'", lambda text: text.startswith("|")),
    "diagnosis": ("a diagnosis written by 'shellvae diagnose'",
                  lambda text: text.lstrip().startswith("{") and '"lambda_max"' in text and '"sweep"' in text),
}
#: names a run folder's files have: never the target of another command's output file
RUN_FOLDER_NAMES = {MANIFEST, "metrics.json", "history.csv", "model.pt", "checkpoint.pt"}


def check_replaceable(path, kind: str) -> None:
    """Refuse to write the ``kind`` output over an existing file that is not an earlier output of the same
    command: a model, checkpoint, run file or data file is never replaced by a table or a diagnosis."""
    path = Path(path)
    try:
        exists = path.is_file()
    except (OSError, ValueError):  # a name the system refuses: the writability check names it
        return
    if not exists:
        return
    what, looks_right = _REPLACEABLE[kind]
    try:
        with open(path, "rb") as f:
            text = f.read(1 << 16).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    if path.name in RUN_FOLDER_NAMES or not looks_right(text):
        raise ShellVAEError(f"--out {path}: the file exists and is not {what}; it is not replaced. Give a new "
                            "file name, or remove that file yourself.")
