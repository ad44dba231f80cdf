"""Fuzzing the command line: bad command lines for every subcommand fail early and clearly.

Each case is a valid baseline command line with one or two mutations: a value of the wrong
type, a number out of range, NaN or inf, an unknown or badly typed method hyperparameter (from
each method's declared ``hyperparameters()``, so a new method is fuzzed without a change here),
a bad or unwritable path, options that exclude each other. Every case must end with exit status
1 or 2 and one ``Error:`` line that names the problem, no traceback, nothing left in the output
folder (or anywhere else), within a few seconds. Cases whose problem is knowable from the command
line must fail before any data is read or any training starts: the loaders, ``ShellVAE.fit``,
the diagnosis and ``run_experiment`` are replaced by sentinels that fail the case if reached.
Seeded (``derandomize``): the same ``N_CASES`` cases on every run.

The issue's own command lines run once more below through a real ``python -m shellvae`` process.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shellvae.cli as cli_module
import shellvae.cli.recommend_command as recommend_cli
import shellvae.evaluation.diagnose  # noqa: F401 (imported for its sentinel: the CLI imports it when diagnose runs)
from shellvae import ShellVAE
from shellvae.cli import main
from shellvae.data import DATASETS
from shellvae.errors import ShellVAEError
from shellvae.experiments import EXPERIMENTS
from shellvae.training.methods import METHODS

REPO = Path(__file__).resolve().parents[1]
#: examples per subcommand (and for the global options); N_CASES in all
EXAMPLES = {"train": 250, "demo": 50, "diagnose": 100, "show": 50, "summarize": 60, "reproduce": 100, "recommend": 60,
            "global": 40}
N_CASES = sum(EXAMPLES.values())
TIME_LIMIT_S = 5.0  # per case; with the sentinels none does more than parse, check and (some) load 600 rows
FUZZ = settings(derandomize=True, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
STATS = {"cases": 0, "exit 1": 0, "exit 2": 0, "after loading data": 0}


# --------------------------------------------------------------------------- mutations
@dataclass(frozen=True)
class Mutation:
    """Arguments that make a command line bad: ``names`` (any one of them) must be in the Error line;
    ``needs_data``: the problem shows only in the data (it may be loaded, never trained on)."""

    args: tuple[str, ...]
    names: tuple[str, ...]
    needs_data: bool = False
    where: str = "append"  # or "prefix" (before the subcommand), "drop-out" (remove the baseline's --out)


def mutation(args, *names, needs_data=False, where="append") -> Mutation:
    return Mutation(tuple(args), tuple(names), needs_data, where)


SAFE_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=10)


def parses_as(kind: type, text: str) -> bool:
    """Whether ``kind(text)`` accepts the text (int or float)."""
    try:
        kind(text)
    except ValueError:
        return False
    return True


def not_an_int(option: str):
    words = st.sampled_from(["1.5", "abc", "1e3", "nan", "inf", "true", "", "2x", "0x10", "--"]) | SAFE_TEXT
    return words.filter(lambda v: not parses_as(int, v)).map(lambda v: mutation([f"{option}={v}"], option))


def int_below(option: str, low: int):
    return st.integers(max_value=low - 1).map(lambda v: mutation([f"{option}={v}"], option))


def int_option(option: str, low: int):
    return not_an_int(option) | int_below(option, low)


def not_a_number(option: str):
    words = st.sampled_from(["nan", "NaN", "inf", "-inf", "+Infinity", "1e999", "-1e999", "abc", "", "1,5", "2x"])
    words = words | SAFE_TEXT.filter(lambda v: not parses_as(float, v))
    return words.map(lambda v: mutation([f"{option}={v}"], option))


def float_outside(option: str, low=None, high=None, low_open=True, high_open=False):
    """Finite floats outside [low, high] (open ends excluded from the range, so included here)."""
    parts = []
    if low is not None:
        parts.append(st.floats(max_value=low, exclude_max=not low_open, allow_nan=False, allow_infinity=False))
    if high is not None:
        parts.append(st.floats(min_value=high, exclude_min=not high_open, allow_nan=False, allow_infinity=False))
    return st.one_of(parts).map(lambda v: mutation([f"{option}={v!r}"], option))


def float_option(option: str, **range_):
    return not_a_number(option) | float_outside(option, **range_)


def choice(option: str, choices):
    return (st.sampled_from(["nosuch", "", "MLP", "shell ", "1"]) | SAFE_TEXT).filter(
        lambda v: v not in choices).map(lambda v: mutation([f"{option}={v}"], option))


# -- method hyperparameters, from each method's own declaration
def is_valid(method: str, key: str, value: str) -> bool:
    try:
        METHODS[method].convert(key, value)
    except ShellVAEError:
        return False
    return True


def bad_hyperparameter_value(method: str, key: str, kind: type, meta: dict):
    """Text for ``-p key=...`` that the method must refuse: wrong type, NaN/inf, out of its declared range."""
    words = ["nan", "inf", "-inf", "abc", "", "2x", "1,5", "none", "maybe"]
    if kind is not bool:
        words += ["true", "1e999"]
    if kind is int:
        words += ["1.5", "0.5"]
    low, high = meta.get("low"), meta.get("high")
    numbers = []
    if low is not None:
        numbers.append(st.floats(max_value=low, exclude_max=not meta.get("low_open"), allow_nan=False,
                                 allow_infinity=False).map(lambda v: repr(int(v) if kind is int and v.is_integer()
                                                                          else v)))
    if high is not None:
        numbers.append(st.floats(min_value=high, exclude_min=not meta.get("high_open"), allow_nan=False,
                                 allow_infinity=False).map(repr))
    values = st.one_of(st.sampled_from(words), SAFE_TEXT, *numbers)
    return values.filter(lambda v: not is_valid(method, key, v))


@st.composite
def method_and_bad_param(draw):
    """(--method M, -p KEY=bad): an unknown key, a malformed pair, a repeated key, or a bad value."""
    method = draw(st.sampled_from(list(METHODS)))
    spec = METHODS[method].hyperparameters()
    kinds = ["unknown", "malformed"] + (["value", "value", "value", "twice"] if spec else [])
    kind = draw(st.sampled_from(kinds))
    head = ["--method", method]
    if kind == "unknown":
        key = draw(st.from_regex(r"[a-z][a-z_0-9]{0,11}", fullmatch=True).filter(lambda k: k not in spec))
        value = draw(st.sampled_from(["1", "0.5", "true", "abc"]))
        return mutation([*head, "-p", f"{key}={value}"], key)
    if kind == "malformed":
        pair = draw(st.sampled_from(["lambda_b", "=5", " =1", "", "novalue"]))
        return mutation([*head, "-p", pair], "-p")
    key = draw(st.sampled_from(list(spec)))
    if kind == "twice":
        default = str(getattr(METHODS[method](), key))
        return mutation([*head, "-p", f"{key}={default}", "-p", f"{key}={default}"], key)
    value = draw(bad_hyperparameter_value(method, key, *spec[key]))
    return mutation([*head, "-p", f"{key}={value}"], key)


# -- paths ({W}: the fixture's folder, holding afile, emptydir, X.npy, run/ ...)
UNWRITABLE_FOLDERS = ["{W}/afile/sub", "{W}/afile/sub/deeper", "/proc/shellvae-fuzz/out", "{W}/" + "x" * 300]
UNWRITABLE_FILES = ["{W}/afile/out.json", "/proc/shellvae-fuzz/out.json", "{W}/" + "x" * 300 + "/t.md"]


def out_folder(option="--out"):
    return (st.sampled_from(UNWRITABLE_FOLDERS).map(lambda p: mutation([option, p], "afile", "shellvae-fuzz", "x" * 30))
            | st.just(mutation([option, "{W}/afile"], option)) | st.just(mutation([option, ""], option)))


def out_file(option="--out"):
    return (st.sampled_from(UNWRITABLE_FILES).map(lambda p: mutation([option, p], "afile", "shellvae-fuzz", "x" * 30))
            | st.sampled_from(["{W}/emptydir", "", "{W}/run"]).map(lambda p: mutation([option, p], option,
                                                                                      "folder")))


def data_dir(option="--data-dir"):
    return st.sampled_from(["{W}/afile", "{W}/missing-dir", "/proc/shellvae-fuzz"]).map(
        lambda p: mutation([option, p], option))


LONG = "x" * 300  # a file name longer than any file system takes (ENAMETOOLONG)


def data(option="--data"):
    return (st.sampled_from(["{W}/missing.npy", "{W}/dir.npy", "{W}/missing.csv"]).map(
        lambda p: mutation([option, p], p.split("/")[-1]))
        | st.sampled_from([f"{{W}}/{LONG}.npy", f"{LONG}.csv", f"{{W}}/{LONG}/X.npy"]).map(
            lambda p: mutation([option, p], "x" * 30))
        | (SAFE_TEXT.filter(lambda v: v not in DATASETS and "." not in v)
           .map(lambda v: mutation([f"{option}={v}"], option))))


REAL_OPTIONS = {opt for command in [main, *main.commands.values()] for param in command.params
                for opt in [*param.opts, *param.secondary_opts]} | {"--help", "--version"}
NO_SUCH_OPTION = st.from_regex(r"--[a-z][a-z-]{2,12}", fullmatch=True).filter(
    lambda o: o not in REAL_OPTIONS).map(lambda o: mutation([o], o))
DROP_OUT = mutation([], "--out", where="drop-out")


# --------------------------------------------------------------------------- the subcommands
TRAIN = ["train", "--data", "{W}/X.npy", "--epochs", "1", "--n-clusters", "3", "--quiet", "--out", "{OUT}"]
TRAIN_MUTATIONS = st.one_of(
    *(int_option(o, 1) for o in ("--epochs", "--batch-size", "--latent-dim", "--n-train", "--n-test")),
    int_option("--seed", 0), st.integers(min_value=2**32).map(lambda v: mutation([f"--seed={v}"], "--seed")),
    float_option("--sigma2-ratio", low=0), float_option("--sigma2", low=0),
    float_option("--beta", low=0, low_open=False),
    float_option("--lr", low=0), float_option("--certificate-margin", low=0, low_open=False, high=1),
    float_option("--test-size", low=0, high=1, high_open=True),
    st.sampled_from(["1", "0", "-3", "x", "2.5", "", "Auto"]).map(lambda v: mutation([f"--n-clusters={v}"],
                                                                                      "--n-clusters")),
    method_and_bad_param(), method_and_bad_param(),
    choice("--method", list(METHODS)), choice("--arch", ["mlp", "conv"]),
    choice("--compile", ["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]),
    st.sampled_from(["gpu0", "nonsense", "cuda:99", "cpu:x", "", "mps:7"]).map(lambda v: mutation([f"--device={v}"],
                                                                                              "--device")),
    data(), data_dir(), out_folder(), st.just(DROP_OUT), NO_SUCH_OPTION,
    # options that exclude each other
    st.just(mutation(["--sigma2=1", "--sigma2-ratio=2"], "--sigma2")),
    st.just(mutation(["--data", "{W}/X.csv", "--mmap"], "--mmap")),
    st.just(mutation(["--data", "synthetic", "--mmap"], "--mmap")),
    st.just(mutation(["--distributed"], "--distributed")),
    # problems only the data shows: may load it (600 rows), never fit
    st.sampled_from(["--n-train", "--n-test"]).map(lambda o: mutation([f"{o}=100000"], o.lstrip("-").replace("-", "_"),
                                                                      needs_data=True)),
    st.just(mutation(["--n-clusters=100000"], "--n-clusters", needs_data=True)),
    st.just(mutation(["--arch=conv"], "--arch conv", needs_data=True)),
    st.just(mutation(["--show"], "--show", needs_data=True)),
    st.just(mutation(["--data", "{W}/junk.npy"], "junk.npy", needs_data=True)),
    # a folder holding another run (issue 25): refused before the data is read, or, to resume it, once the data
    # shows the runs differ
    st.just(mutation(["--out", "{W}/run"], "holds a")),
    st.sampled_from([["--method", "vanilla"], ["--lr", "0.5"], ["--seed", "9"]]).map(
        lambda change: mutation(["--out", "{W}/run", "--resume", *change], "--resume", needs_data=True)),
    st.just(mutation(["--out", "{W}/run", "--resume", "--overwrite"], "exclude each other")),
)

DEMO = ["demo", "--epochs", "1", "--n-samples", "500", "--quiet", "--out", "{OUT}"]
DEMO_MUTATIONS = st.one_of(int_option("--epochs", 1), int_option("--n-samples", 500), int_option("--seed", 0),
                           float_option("--sigma2-ratio", low=0), out_folder(), NO_SUCH_OPTION)

DIAGNOSE = ["diagnose", "--data", "{W}/X.npy", "--k-grid", "2,3", "--out", "{OUT}/diagnosis.json"]
DIAGNOSE_MUTATIONS = st.one_of(
    st.sampled_from(["a,b", "1,2", "", ",", "2;3", "2,,x", "0", "-4,5", "2.5"]).map(
        lambda v: mutation([f"--k-grid={v}"], "--k-grid")),
    int_option("--max-samples", 3), int_option("--seed", 0),
    float_option("--sigma2-ratio", low=0), float_option("--sigma2", low=0),
    float_option("--beta", low=0, low_open=False),
    st.just(mutation(["--sigma2=1", "--sigma2-ratio=2"], "--sigma2")),
    data(), data_dir(), out_file(), NO_SUCH_OPTION,
    st.sampled_from(["run/model.pt", "run/run.json", "X.npy", "afile"]).map(  # never replaced by a diagnosis
        lambda p: mutation(["--out", "{W}/" + p], "not replaced", "--data file")),
)

SHOW = ["show", "--model", "{W}/run"]  # run/ holds a model of non-image data: a bad baseline itself
SHOW_MUTATIONS = st.one_of(
    st.sampled_from(["{W}/missing", "{W}/afile"]).map(lambda p: mutation(["--model", p], "--model")),
    st.sampled_from(["emptydir", "no-model", "no-metrics", "bad-json", "list-json", "no-spec"]).map(
        lambda d: mutation(["--model", "{W}/" + d], f"{d}/")),
    data_dir(), NO_SUCH_OPTION, st.just(mutation([], "not image data")),
    st.just(mutation(["--model", "{W}/deep-json"], "deep-json/")),
    st.just(mutation(["--model", "{W}/" + LONG], "x" * 30)),
    st.just(mutation(["--model", "{W}/tampered"], "checksum")),
    st.just(mutation(["--model", "{W}/bad-spec"], "n_train")),
)

SUMMARIZE = ["summarize", "{W}/run", "--out", "{OUT}/table.md"]
SUMMARIZE_MUTATIONS = st.one_of(
    st.sampled_from(["missing", "afile", "emptydir", "bad-json", "list-json", "run/model.pt", "deep-json",
                     LONG]).map(lambda d: mutation(["{W}/" + d], d[:30])),
    out_file(), NO_SUCH_OPTION,
    st.sampled_from(["run/model.pt", "run/checkpoint.pt", "X.npy", "afile"]).map(  # never replaced by a table
        lambda p: mutation(["--out", "{W}/" + p], "not replaced")),
)

REPRODUCE = ["reproduce", "table1", "--profile", "test", "--out", "{OUT}"]
REPRODUCE_MUTATIONS = st.one_of(
    choice("--profile", ["quick", "full", "test"]),
    (st.sampled_from([",", "", " , ", "nosuch"]) | SAFE_TEXT).filter(lambda v: not _is_dataset_list(v)).map(
        lambda v: mutation([f"--datasets={v}"], "--datasets")),
    int_option("--seeds", 1), int_option("--jobs", 1),
    st.sampled_from([["--seeds", "1000000"], ["--jobs", "1000"]]).map(lambda a: mutation(a, a[0])),
    float_option("--certificate-margin", low=0, low_open=False, high=1),
    st.sampled_from(["mnist", "=x", "mnist=", "nosuch={W}/emptydir", "mnist={W}/missing", "mnist={W}/afile",
                     "fashion-mnist={W}/afile"]).map(lambda v: mutation(["--data-dir", v], "--data-dir")),
    st.just(mutation(["--data-dir", "mnist={W}/emptydir", "--data-dir", "mnist={W}/emptydir"], "--data-dir")),
    out_folder(), st.just(DROP_OUT), NO_SUCH_OPTION,
)


RECOMMEND = ["recommend", "--data", "{W}/X.npy", "--methods", "vanilla", "--seeds", "1", "--epochs", "1", "--quiet",
             "--out", "{OUT}"]
RECOMMEND_MUTATIONS = st.one_of(
    int_option("--seeds", 1), int_option("--epochs", 1), int_option("--jobs", 1),
    st.just(mutation(["--jobs", "1000"], "--jobs")),
    float_option("--sigma2-ratio", low=0), float_option("--beta", low=0, low_open=False),
    float_option("--certificate-margin", low=0, low_open=False, high=1),
    choice("--executor", ["local", "ray"]),
    st.sampled_from(["nosuch", "", ",", "vanilla,vanilla", "vanilla,nosuch", "Vanilla"]).map(
        lambda v: mutation([f"--methods={v}"], "--methods")),
    st.just(mutation(["--address", "auto"], "--address")),  # without --executor ray
    st.sampled_from(["{W}/missing.npy", "{W}/emptydir"]).map(lambda p: mutation(["--labels", p], "--labels")),
    st.just(mutation(["--data", "synthetic", "--labels", "{W}/X.npy"], "--labels")),  # a named set has its own
    data(), data_dir(), out_folder(), st.just(DROP_OUT), NO_SUCH_OPTION,
)


def _is_dataset_list(text: str) -> bool:
    names = [d.strip().replace("-", "_") for d in text.split(",") if d.strip()]
    return bool(names) and all(n in DATASETS for n in names)


GLOBAL_MUTATIONS = st.one_of(int_option("--threads", 1).map(lambda m: Mutation(m.args, m.names, where="prefix")),
                             st.just(mutation(["--threads", "100000"], "--threads", where="prefix")),
                             st.just(mutation(["--no-such-flag"], "--no-such-flag", where="prefix")))
BASELINES = {"train": TRAIN, "demo": DEMO, "diagnose": DIAGNOSE, "show": SHOW, "summarize": SUMMARIZE,
             "reproduce": REPRODUCE, "recommend": RECOMMEND}


def command_lines(baseline: list[str], mutations):
    """The baseline with one or two mutations."""
    return st.lists(mutations, min_size=1, max_size=2).map(lambda ms: (baseline, ms))


@st.composite
def bad_experiment(draw):
    name = draw((st.sampled_from(["nosuch", "Table1", "", "table3"]) | SAFE_TEXT).filter(
        lambda v: v not in EXPERIMENTS and not v.startswith("-")))
    return ["reproduce", name, *REPRODUCE[2:]], [mutation([], "EXPERIMENT")]


# --------------------------------------------------------------------------- running a case
class Sentinel:
    """Replaces a costly stage; a case that reaches it fails (``allow_data`` lets a loader through)."""

    allow_data = False

    def __init__(self, stage: str, real=None):
        self.stage, self.real = stage, real

    def __call__(self, *args, **kwargs):
        if self.real is not None and Sentinel.allow_data:
            STATS["after loading data"] += 1
            return self.real(*args, **kwargs)
        raise AssertionError(f"reached {self.stage}: the command line's problem was not caught before it")


def flipped(model: Path) -> bytes:
    """The model file's bytes with one byte of its largest tensor flipped (the archive's checksums still say
    what it held)."""
    import zipfile

    blob = bytearray(model.read_bytes())
    with zipfile.ZipFile(model) as archive:
        record = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    start = record.header_offset + 30 + int.from_bytes(blob[record.header_offset + 26:record.header_offset + 28],
                                                       "little")
    start += int.from_bytes(blob[record.header_offset + 28:record.header_offset + 30], "little")
    blob[start + record.file_size // 2] ^= 0x01
    return bytes(blob)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """{W}: data, a regular file, an empty folder, a trained run (non-image data) and damaged run folders."""
    w = tmp_path_factory.mktemp("clifuzz")
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(c, 0.3, size=(200, 6)) for c in (-2, 0, 2)]).astype(np.float32)
    np.save(w / "X.npy", X)
    np.savetxt(w / "X.csv", X, delimiter=",")
    (w / "junk.npy").write_bytes(b"\x93NUMPY junk, not an array")
    (w / "afile").write_text("a regular file\n")
    for folder in ("emptydir", "dir.npy", "out"):
        (w / folder).mkdir()
    result = CliRunner().invoke(main, ["train", "--data", str(w / "X.npy"), "--epochs", "1", "--n-clusters", "3",
                                       "--latent-dim", "2", "--quiet", "--out", str(w / "run")])
    assert result.exit_code == 0, result.output
    model, metrics = (w / "run" / "model.pt").read_bytes(), (w / "run" / "metrics.json").read_text()
    for name, files in {"no-model": {"metrics.json": metrics}, "no-metrics": {"model.pt": model},
                        "bad-json": {"model.pt": model, "metrics.json": "{bad"},
                        "list-json": {"model.pt": model, "metrics.json": "[1, 2]"},
                        "no-spec": {"model.pt": model, "metrics.json": "{}"},
                        "deep-json": {"model.pt": model, "metrics.json": "[" * 100_000 + "]" * 100_000},
                        "bad-spec": {"model.pt": model, "metrics.json": '{"data_spec": {"data": "x", "n_train": "a"}}'},
                        "tampered": {"model.pt": flipped(w / "run" / "model.pt"), "metrics.json": metrics}}.items():
        (w / name).mkdir()
        for file, content in files.items():
            (w / name / file).write_bytes(content if isinstance(content, bytes) else content.encode())
    return w


@pytest.fixture(scope="module")
def sentinels(workspace):
    mp = pytest.MonkeyPatch()
    mp.setattr(cli_module, "load_dataset", Sentinel("load_dataset", cli_module.load_dataset))
    data_module, diagnose_module = sys.modules["shellvae.data"], sys.modules["shellvae.evaluation.diagnose"]
    mp.setattr(data_module, "load_dataset", Sentinel("shellvae.data.load_dataset", data_module.load_dataset))
    mp.setattr(ShellVAE, "fit", Sentinel("ShellVAE.fit"))
    mp.setattr(cli_module, "fit_and_record", Sentinel("fit_and_record"))
    mp.setattr(cli_module, "run_experiment", Sentinel("run_experiment"))
    mp.setattr(diagnose_module, "diagnose", Sentinel("the diagnosis"))
    for name in ("read_array", "load_dataset"):  # recommend's own imports of the loaders
        mp.setattr(recommend_cli, name, Sentinel(f"recommend: {name}", getattr(recommend_cli, name)))
    mp.setattr(recommend_cli, "run_recommend", Sentinel("recommend's trainings"))
    yield
    mp.undo()


_counter = itertools.count()


def snapshot(w: Path) -> dict:
    """Every file and folder of the workspace but out/ (where each case has a fresh folder), with its size."""
    return {str(p.relative_to(w)): p.stat().st_size for p in w.rglob("*") if w / "out" not in (p, *p.parents)}


def run_case(w: Path, baseline: list[str], mutations: list[Mutation]) -> None:
    out = w / "out" / f"case{next(_counter)}"
    args = list(baseline)
    for m in mutations:
        if m.where == "drop-out":
            while "--out" in args:
                i = args.index("--out")
                del args[i:i + 2]
        elif m.where == "prefix":
            args = [*m.args, *args]
        else:
            args += m.args
    args = [a.replace("{W}", str(w)).replace("{OUT}", str(out)) for a in args]
    knowable = not all(m.needs_data for m in mutations)
    names = [n.replace("{W}", str(w)) for m in mutations for n in m.names]
    before = snapshot(w)
    Sentinel.allow_data = not knowable
    start = time.perf_counter()
    try:
        result = CliRunner().invoke(main, args)
    finally:
        Sentinel.allow_data = False
    seconds = time.perf_counter() - start
    shown = f"shellvae {' '.join(args)}\n{result.output}"
    assert "Traceback" not in result.output, shown
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{shown}\n{type(result.exception).__name__}: {result.exception}")
    assert result.exit_code in (1, 2), shown
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, shown
    assert any(n in errors[0] for n in names), f"the Error line names none of {names}:\n{shown}"
    assert not out.exists(), f"left {out} behind ({sorted(out.rglob('*'))}):\n{shown}"
    assert snapshot(w) == before, f"changed the workspace:\n{shown}"
    assert seconds < TIME_LIMIT_S, f"{seconds:.1f} s:\n{shown}"
    STATS["cases"] += 1
    STATS[f"exit {result.exit_code}"] += 1


@pytest.mark.parametrize("command", list(BASELINES))
def test_fuzz_bad_command_lines_fail_early_and_clearly(command, workspace, sentinels):
    mutations = {"train": TRAIN_MUTATIONS, "demo": DEMO_MUTATIONS, "diagnose": DIAGNOSE_MUTATIONS,
                 "show": SHOW_MUTATIONS, "summarize": SUMMARIZE_MUTATIONS, "reproduce": REPRODUCE_MUTATIONS,
                 "recommend": RECOMMEND_MUTATIONS}[command]
    cases = command_lines(BASELINES[command], mutations)
    if command == "reproduce":
        cases = cases | bad_experiment()

    @settings(FUZZ, max_examples=EXAMPLES[command])
    @given(cases)
    def check(case):
        run_case(workspace, *case)

    before = STATS["cases"]
    check()
    assert STATS["cases"] - before == EXAMPLES[command]  # as many as the doc says (docs/reliability.md)


def test_fuzz_global_options(workspace, sentinels):
    @settings(FUZZ, max_examples=EXAMPLES["global"])
    @given(st.sampled_from(list(BASELINES.values())).flatmap(lambda b: command_lines(b, GLOBAL_MUTATIONS)))
    def check(case):
        run_case(workspace, *case)

    before = STATS["cases"]
    check()
    assert STATS["cases"] - before == EXAMPLES["global"]


# --------------------------------------------------------------------------- the issue's command lines
def run_shellvae(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "shellvae", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


ISSUE_LINES = [  # issue 15: each failed after reading the data, or with a traceback
    (["-p", "lambda_b=abc"], "Error: Invalid value for -p: method 'shell': lambda_b='abc' is not a number >= 0."),
    (["--out", "afile/sub"], "Error: cannot write the output folder afile/sub: afile is a file, not a folder. "
                             "Choose another path."),
    (["-p", "lambda_b=-5"], "Error: Invalid value for -p: method 'shell': lambda_b='-5' is out of range: need a "
                            "number >= 0."),
    (["--method", "free_bits", "-p", "free_bits=nan"], "Error: Invalid value for -p: method 'free_bits': "
                                                       "free_bits='nan' is not a number >= 0."),
    (["--method", "shell_lagrange", "-p", "alpha=2x"], "Error: Invalid value for -p: method 'shell_lagrange': "
                                                       "alpha='2x' is not a number >= 0 and < 1."),
]


def issue_folder(tmp: Path) -> list[str]:
    """X.npy is not an array: had a command read it, its error would be about X.npy."""
    (tmp / "X.npy").write_bytes(b"not an array")
    (tmp / "afile").write_text("a regular file\n")
    return ["train", "--data", "X.npy", "--n-clusters", "auto", "--epochs", "1", "--quiet", "--out", "run"]


def check_issue_line(tmp: Path, code: int, output: str, message: str) -> None:
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert code in (1, 2) and "Traceback" not in output, output
    assert errors == [message], output
    assert sorted(p.name for p in tmp.iterdir()) == ["X.npy", "afile"]  # no output folder, nothing written


@pytest.mark.parametrize("args, message", ISSUE_LINES[:2], ids=["-p lambda_b=abc", "--out afile/sub"])
def test_the_issues_command_lines_fail_before_reading_data(args, message, tmp_path):
    """The issue's two command lines, in a real ``python -m shellvae`` process."""
    proc = run_shellvae(*issue_folder(tmp_path), *args, cwd=tmp_path)
    check_issue_line(tmp_path, proc.returncode, proc.stderr, message)


@pytest.mark.parametrize("args, message", ISSUE_LINES[2:], ids=["lambda_b=-5", "free_bits=nan", "alpha=2x"])
def test_the_issues_other_method_parameters_are_refused(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, [*issue_folder(tmp_path), *args])
    check_issue_line(tmp_path, result.exit_code, result.output, message)
