"""The examples in examples/ run, on small data (``main(quick=True)``, what ``--quick`` runs), and
show what they say they show."""

import importlib.util

import pytest

from tests.conftest import REPO

EXAMPLES = REPO / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_is_tested():
    tested = {"plain_loop", "certify_external", "custom_architecture"}
    assert {p.stem for p in EXAMPLES.glob("*.py")} == tested


@pytest.mark.parametrize("lagrange", [False, True])
def test_plain_loop_with_the_constraint_is_certified_and_without_it_collapses(lagrange):
    certs = load("plain_loop").main(quick=True, lagrange=lagrange)
    assert certs["with the constraint"].certified
    assert not certs["plain VAE"].certified


def test_certify_external_tells_a_working_vae_from_a_collapsed_one():
    certs = load("certify_external").main(quick=True)
    assert certs["beta=1"].certified
    assert not certs["beta=50"].certified
    assert not certs["constant decoder"].certified


def test_custom_architecture_trains_saves_and_loads():
    from shellvae import ARCHITECTURES

    try:
        results = load("custom_architecture").main(quick=True)  # asserts its save/load round trips itself
    finally:
        if "deepconv" in ARCHITECTURES:
            ARCHITECTURES.remove("deepconv")  # leave the registry as the other tests expect it
    assert results["resmlp"].certified
    assert results["deepconv"].feasible  # 2 epochs on 1,500 digits: trained, not expected to be certified yet
