"""Tests for the built-in GPU catalog (gpusplit.devices.catalog)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from gpusplit.cli.errors import describe
from gpusplit.devices import catalog
from gpusplit.devices.catalog import (
    BACKENDS,
    CATALOG,
    AmbiguousCardError,
    CatalogEntry,
    UnknownCardError,
    close_matches,
    lookup,
    normalise,
)

GIB = 1024**3


# ---------------------------------------------------------------- table sanity


def test_catalog_is_large_enough():
    assert len(CATALOG) >= 30


@pytest.mark.parametrize("entry", CATALOG, ids=lambda e: e.name)
def test_row_is_well_formed(entry: CatalogEntry):
    assert entry.name and entry.vendor
    assert re.match(r"^https?://\S+$", entry.source), entry.source
    assert entry.backend in BACKENDS
    assert isinstance(entry.memory_bytes, int) and entry.memory_bytes > 0
    assert entry.memory_bytes % GIB == 0  # vendor "GB" is taken as GiB
    assert entry.bandwidth_bytes_per_s > 0
    assert entry.memory_type
    assert entry.interconnect
    assert entry.link_bytes_per_s is None or entry.link_bytes_per_s > 0
    assert entry.logical_devices >= 1
    if entry.vendor == "Apple":
        assert entry.unified_memory and entry.backend == "Metal" and entry.pcie == ""
    else:
        assert not entry.unified_memory
        assert re.match(r"^PCIe \d\.0 x(8|16)$", entry.pcie), entry.pcie
    # a size in the name must agree with the memory figure
    m = re.search(r"(\d+)GB", entry.name)
    if m:
        assert entry.memory_bytes == int(m.group(1)) * GIB


def test_backend_matches_vendor():
    expected = {"NVIDIA": "CUDA", "AMD": "ROCm", "Apple": "Metal"}
    for e in CATALOG:
        assert e.backend == expected[e.vendor], e.name


def test_names_and_aliases_unique_after_normalisation():
    owner: dict[str, str] = {}
    for e in CATALOG:
        for spelling in (e.name, *e.aliases):
            key = normalise(spelling)
            assert key, spelling
            assert owner.setdefault(key, e.name) == e.name, f"{spelling!r} resolves to both {owner[key]!r} and {e.name!r}"
    names = [e.name for e in CATALOG]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("entry", CATALOG, ids=lambda e: e.name)
def test_every_name_and_alias_looks_up_its_own_row(entry: CatalogEntry):
    for spelling in (entry.name, *entry.aliases, entry.name.upper(), entry.name.lower()):
        assert lookup(spelling) is entry, spelling


def test_ambiguous_names_list_real_rows_and_are_not_rows():
    names = {e.name for e in CATALOG}
    keys = {normalise(s) for e in CATALOG for s in (e.name, *e.aliases)}
    for stem, variants in catalog._AMBIGUOUS_SPEC.items():
        assert len(variants) >= 2
        assert set(variants) <= names, stem
        assert normalise(stem) not in keys, stem


def test_module_imports_only_stdlib():
    tree = ast.parse(Path(catalog.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


# ---------------------------------------------------------------- normalise


@pytest.mark.parametrize(
    "raw, key",
    [
        ("NVIDIA GeForce RTX 4090", "rtx4090"),
        ("rtx_4090", "rtx4090"),
        ("A100-80GB", "a10080gb"),
        ("A100 80 GB", "a10080gb"),
        ("A100 80G", "a10080gb"),
        ("a100-80GiB", "a10080gb"),
        ("AMD Instinct MI300X", "mi300x"),
        ("AMD Radeon RX 7900 XTX", "rx7900xtx"),
        ("Apple M2 Ultra", "m2ultra"),
    ],
)
def test_normalise(raw, key):
    assert normalise(raw) == key


# ---------------------------------------------------------------- lookup


@pytest.mark.parametrize(
    "spelling, name, memory_gib",
    [
        ("RTX 4090", "RTX 4090", 24),
        ("rtx4090", "RTX 4090", 24),
        ("GeForce RTX 4090", "RTX 4090", 24),
        ("NVIDIA GeForce RTX 4090", "RTX 4090", 24),
        ("4090", "RTX 4090", 24),
        ("RTX 4090 24GB", "RTX 4090", 24),
        ("A100-80GB", "A100 80GB SXM", 80),
        ("A100 80GB", "A100 80GB SXM", 80),
        ("a100 80gb sxm", "A100 80GB SXM", 80),
        ("a100-80gb-sxm4", "A100 80GB SXM", 80),
        ("A100 SXM4 40GB", "A100 40GB SXM", 40),
        ("A100 80GB PCIe", "A100 80GB PCIe", 80),
        ("a100_pcie_40gb", "A100 40GB PCIe", 40),
        ("H100 SXM", "H100 SXM", 80),
        ("H100-SXM5-80GB", "H100 SXM", 80),
        ("H100-PCIe", "H100 PCIe", 80),
        ("H100 NVL", "H100 NVL", 94),
        ("H200", "H200", 141),
        ("MI300X", "MI300X", 192),
        ("AMD Instinct MI300X", "MI300X", 192),
        ("M2 Ultra", "M2 Ultra", 192),
        ("Apple M4 Max", "M4 Max", 128),
        ("4060 Ti 16GB", "RTX 4060 Ti 16GB", 16),
        ("rtx 4060 ti 8 gb", "RTX 4060 Ti 8GB", 8),
        ("3080 10GB", "RTX 3080 10GB", 10),
        ("RTX 3060 12G", "RTX 3060 12GB", 12),
        ("RTX 4080 SUPER", "RTX 4080 SUPER", 16),
        ("RTX 4080", "RTX 4080", 16),
        ("7900 XTX", "RX 7900 XTX", 24),
        ("W7900", "Radeon PRO W7900", 48),
        ("RTX A6000", "RTX A6000", 48),
        ("RTX 6000 Ada Generation", "RTX 6000 Ada", 48),
        ("Tesla T4", "T4", 16),
        ("V100 32GB", "V100 32GB", 32),
    ],
)
def test_lookup_user_spellings(spelling, name, memory_gib):
    entry = lookup(spelling)
    assert entry.name == name
    assert entry.memory_bytes == memory_gib * GIB


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownCardError) as info:
        lookup("RTX 4900")
    err = info.value
    assert not isinstance(err, AmbiguousCardError)
    assert "RTX 4090" in err.suggestions
    assert len(err.suggestions) <= 5
    msg = str(err)
    assert "'RTX 4900' is not a GPU the catalog knows" in msg
    assert "did you mean" in msg and "RTX 4090" in msg
    assert "(the cards it knows: catalog)" in msg  # the library names its parameters, the CLI its commands
    assert "gpusplit devices --catalog" in describe(err)[0]


def test_unknown_error_is_a_value_error():
    with pytest.raises(ValueError):
        lookup("RTX 4900")


def test_unknown_name_without_matches_hints_at_a_size():
    with pytest.raises(UnknownCardError) as info:
        lookup("qwertyuiop")
    assert info.value.suggestions == []
    assert "24GiB" in str(info.value)


def test_size_that_disagrees_with_the_row_is_unknown():
    with pytest.raises(UnknownCardError) as info:
        lookup("RTX 4090 48GB")
    assert not isinstance(info.value, AmbiguousCardError)
    assert info.value.suggestions == ["RTX 4090"]
    assert "e.g. 48GiB" in str(info.value) and describe(info.value)[0].startswith("--gpu 'RTX 4090 48GB'")


@pytest.mark.parametrize(
    "spelling, variants",
    [
        ("A100", {"A100 40GB PCIe", "A100 40GB SXM", "A100 80GB PCIe", "A100 80GB SXM"}),
        ("nvidia a100", {"A100 40GB PCIe", "A100 40GB SXM", "A100 80GB PCIe", "A100 80GB SXM"}),
        ("A100 SXM", {"A100 40GB SXM", "A100 80GB SXM"}),
        ("A100 PCIe", {"A100 40GB PCIe", "A100 80GB PCIe"}),
        ("H100", {"H100 SXM", "H100 PCIe", "H100 NVL"}),
        ("V100", {"V100 16GB", "V100 32GB"}),
        ("4060 Ti", {"RTX 4060 Ti 8GB", "RTX 4060 Ti 16GB"}),
        ("RTX 4060 Ti", {"RTX 4060 Ti 8GB", "RTX 4060 Ti 16GB"}),
        ("3080", {"RTX 3080 10GB", "RTX 3080 12GB"}),
        ("GeForce RTX 3060", {"RTX 3060 8GB", "RTX 3060 12GB"}),
    ],
)
def test_ambiguous_names_list_variants(spelling, variants):
    with pytest.raises(AmbiguousCardError) as info:
        lookup(spelling)
    err = info.value
    assert isinstance(err, UnknownCardError)
    assert set(err.variants) == variants
    assert set(err.suggestions) == variants
    msg = str(err)
    assert repr(spelling) in msg
    for v in variants:
        assert v in msg


def test_close_matches():
    assert close_matches("RTX 4900")[0] == "RTX 4090"
    assert "MI300X" in close_matches("MI300")
    assert len(close_matches("RTX 40", n=3)) <= 3
    assert close_matches("") == []
    assert close_matches("qwertyuiop") == []


# ---------------------------------------------------------------- datasheet spot checks
# Independent expectations taken from the vendors' datasheets / spec pages.


@pytest.mark.parametrize(
    "name, memory_gib, bandwidth, memory_type",
    [
        ("H100 SXM", 80, 3.35e12, "HBM3"),
        ("H100 PCIe", 80, 2.0e12, "HBM2e"),
        ("H100 NVL", 94, 3.9e12, "HBM3"),
        ("H200", 141, 4.8e12, "HBM3e"),
        ("A100 80GB SXM", 80, 2039e9, "HBM2e"),
        ("A100 80GB PCIe", 80, 1935e9, "HBM2e"),
        ("A100 40GB PCIe", 40, 1555e9, "HBM2"),
        ("L40S", 48, 864e9, "GDDR6"),
        ("L4", 24, 300e9, "GDDR6"),
        ("RTX 5090", 32, 1792e9, "GDDR7"),
        ("RTX 4090", 24, 1008e9, "GDDR6X"),
        ("RTX 3090", 24, 936e9, "GDDR6X"),
        ("RTX 4060 Ti 16GB", 16, 288e9, "GDDR6"),
        ("RTX A6000", 48, 768e9, "GDDR6"),
        ("MI300X", 192, 5.3e12, "HBM3"),
        ("MI250X", 128, 3.2768e12, "HBM2e"),
        ("RX 7900 XTX", 24, 960e9, "GDDR6"),
        ("Radeon PRO W7900", 48, 864e9, "GDDR6"),
        ("M2 Ultra", 192, 800e9, "LPDDR5"),
        ("M4 Max", 128, 546e9, "LPDDR5X"),
        ("M4 Pro", 64, 273e9, "LPDDR5X"),
    ],
)
def test_datasheet_figures(name, memory_gib, bandwidth, memory_type):
    e = lookup(name)
    assert e.memory_bytes == memory_gib * GIB
    assert e.bandwidth_bytes_per_s == pytest.approx(bandwidth)
    assert e.memory_type.startswith(memory_type)


def test_interconnect_figures():
    assert lookup("H100 SXM").link_bytes_per_s == pytest.approx(900e9)
    assert lookup("A100 80GB SXM").link_bytes_per_s == pytest.approx(600e9)
    assert lookup("MI300X").link_bytes_per_s == pytest.approx(896e9)
    assert lookup("RTX 4090").link_bytes_per_s is None
    assert lookup("RTX 4090").pcie == "PCIe 4.0 x16"
    assert lookup("RTX 4060 Ti 8GB").pcie == "PCIe 4.0 x8"
    assert lookup("H100 SXM").pcie == "PCIe 5.0 x16"
    assert lookup("M2 Ultra").link_bytes_per_s is None


def test_apple_rows_are_unified_and_mi250x_is_two_devices():
    assert lookup("M2 Ultra").unified_memory
    assert not lookup("RTX 4090").unified_memory
    assert lookup("MI250X").logical_devices == 2
    assert lookup("MI300X").logical_devices == 1


def test_as_dict_round_trips_fields():
    e = lookup("RTX 4090")
    d = e.as_dict()
    assert d["name"] == "RTX 4090"
    assert d["memory_bytes"] == 24 * GIB
    assert d["aliases"] == list(e.aliases)
    assert e.memory_gib == 24.0
