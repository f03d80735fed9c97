"""cli/lazy.py: a library module named at a command module's top runs on first use, once."""

from __future__ import annotations

import sys

import pytest

from gpusplit.cli.lazy import lazy_module


def test_a_lazy_module_runs_on_first_attribute_access_and_once(tmp_path, monkeypatch):
    (tmp_path / "lazy_probe.py").write_text(
        "import sys\nsys.lazy_probe_runs = getattr(sys, 'lazy_probe_runs', 0) + 1\nVALUE = 42\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lazy_probe", raising=False)
    monkeypatch.setattr(sys, "lazy_probe_runs", 0, raising=False)
    module = lazy_module("lazy_probe")
    assert sys.lazy_probe_runs == 0  # named, found, not run
    assert module.VALUE == 42 and sys.lazy_probe_runs == 1
    assert module.VALUE == 42 and sys.lazy_probe_runs == 1
    assert lazy_module("lazy_probe") is module and __import__("lazy_probe") is module


def test_a_misspelt_module_fails_when_named_not_when_used():
    with pytest.raises(ModuleNotFoundError, match="gpusplit.documents.rendr"):
        lazy_module("gpusplit.documents.rendr")
