"""Built-in catalog of common GPUs, for what-if planning (``--gpu "RTX 4090"``).

Every row carries the vendor's own figures and a ``source`` URL of the vendor
datasheet or spec page they come from (for Apple, the newsroom announcement of
the chip).

Conventions
-----------
* **Memory** is stored in bytes, reading the vendor's "GB" as GiB:
  ``24 GB GDDR6X`` on the RTX 4090 is ``24 * 1024**3`` and ``80 GB HBM3`` on the
  H100 is ``80 * 1024**3``.  That is what the vendors mean for GDDR/HBM parts;
  note that the capacity a driver reports as free is a little lower (ECC,
  reserved/firmware memory, CUDA/HIP context), which the planner accounts for
  separately.  The B200 is listed at the 180 GB of the shipping HGX/DGX B200
  configuration (drivers report about 178 GiB of it).
* **Bandwidth** is the vendor's peak figure in bytes/s using decimal units as
  the vendor does: RTX 4090 "1008 GB/s" is ``1008e9``; H100 SXM "3.35 TB/s" is
  ``3.35e12``.  For GeForce/Radeon cards whose spec page lists memory speed and
  bus width, it is data rate x bus width / 8 (the figure NVIDIA/AMD quote).
* ``link_bytes_per_s`` is the vendor's peer-to-peer link figure (NVLink or AMD
  Infinity Fabric) per GPU, as marketed (aggregate, bidirectional), or ``None``
  when GPUs can only talk over PCIe.  Where the link is a bridge between a pair
  of PCIe cards (A100/H100 PCIe, H100 NVL, A40, RTX A6000, RTX 3090, ...) the
  ``interconnect`` text says so; the bandwidth only applies within a bridged
  pair.
* Apple Silicon rows are **unified memory** (``unified_memory=True``): the
  number is the largest common configuration of that chip, shared with the CPU
  and the OS; Metal lets the GPU use roughly 65-75 % of it by default
  (``recommendedMaxWorkingSetSize``).  ``pcie`` is empty for them.
* Where one name covers several form factors with the same memory, the SXM
  (baseboard) part is the default: ``"A100 80GB"`` is the A100 80GB SXM,
  ``"H100 80GB"`` the H100 SXM.  Names that differ in memory size ("A100",
  "H100", "V100", "RTX 3080", "RTX 4060 Ti", ...) are ambiguous and
  :func:`lookup` raises :class:`AmbiguousCardError` listing the variants.

Only the standard library is imported here: this module is on CLI start-up
paths that must stay fast.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from ..base.errors import InputError

__all__ = [
    "BACKENDS",
    "CATALOG",
    "AmbiguousCardError",
    "CatalogEntry",
    "UnknownCardError",
    "close_matches",
    "lookup",
    "normalise",
]

GIB = 1024**3

#: Backends a catalog row may name (llama.cpp / ggml backend families).
BACKENDS = ("CUDA", "ROCm", "Metal")

#: Words dropped by :func:`normalise`: vendor and marketing words that users
#: add or leave out at will ("NVIDIA GeForce RTX 4090", "AMD Instinct MI300X",
#: "H100 Tensor Core GPU").
_NOISE_WORDS = frozenset(
    {
        "nvidia",
        "geforce",
        "amd",
        "radeon",
        "apple",
        "instinct",
        "tesla",
        "quadro",
        "tensor",
        "core",
        "gpu",
        "graphics",
        "card",
    }
)

_CATALOG_HINT = "(the cards it knows: {p.catalog})"


@dataclass(frozen=True)
class CatalogEntry:
    """One GPU part with its vendor figures."""

    name: str
    vendor: str
    backend: str
    memory_bytes: int
    bandwidth_bytes_per_s: float
    memory_type: str
    interconnect: str
    #: NVLink / Infinity Fabric peer bandwidth per GPU, or None (PCIe only).
    link_bytes_per_s: float | None
    #: Host link, e.g. "PCIe 4.0 x16"; "" for Apple Silicon.
    pcie: str
    aliases: tuple[str, ...]
    source: str
    unified_memory: bool = False
    #: How many devices the card shows to ROCm/CUDA (MI250X: 2 GCDs).
    logical_devices: int = 1
    notes: str = ""

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / GIB

    def as_dict(self) -> dict[str, object]:
        """Plain-data form (for ``--json`` output)."""
        return {
            "name": self.name,
            "vendor": self.vendor,
            "backend": self.backend,
            "memory_bytes": self.memory_bytes,
            "bandwidth_bytes_per_s": self.bandwidth_bytes_per_s,
            "memory_type": self.memory_type,
            "interconnect": self.interconnect,
            "link_bytes_per_s": self.link_bytes_per_s,
            "pcie": self.pcie,
            "aliases": list(self.aliases),
            "source": self.source,
            "unified_memory": self.unified_memory,
            "logical_devices": self.logical_devices,
            "notes": self.notes,
        }


class UnknownCardError(InputError, ValueError):
    """The name matches no catalog row (or several: see AmbiguousCardError)."""

    def __init__(self, name: str, suggestions: list[str] | None = None, message: str | None = None, **values: object):
        self.name = name
        self.suggestions = list(suggestions or [])
        if message is None:
            if self.suggestions:
                message = "{p.gpus} {name!r} is not a GPU the catalog knows; did you mean: {suggestions}? " + _CATALOG_HINT
            else:
                message = (
                    "{p.gpus} {name!r} is not a GPU the catalog knows; give its memory size instead, e.g. 24GiB " + _CATALOG_HINT
                )
        super().__init__(message, "", parameter="gpus", name=name, suggestions=", ".join(self.suggestions), **values)


class AmbiguousCardError(UnknownCardError):
    """The name covers several catalog rows (e.g. "A100": 40GB/80GB, PCIe/SXM)."""

    def __init__(self, name: str, variants: list[str]):
        self.variants = list(variants)
        super().__init__(
            name,
            self.variants,
            "{p.gpus} {name!r} names several GPUs; did you mean: {suggestions}? " + _CATALOG_HINT,
        )


# --------------------------------------------------------------------------
# name normalisation

_MEM_TOKEN = re.compile(r"^(\d+)(?:g|gb|gib)$")


def _tokens(name: str) -> list[str]:
    """Lowercase word tokens with noise words dropped and sizes as "<n>gb"."""
    raw = re.sub(r"[^0-9a-z]+", " ", name.lower()).split()
    out: list[str] = []
    for tok in raw:
        if tok in _NOISE_WORDS:
            continue
        if tok in ("g", "gb", "gib") and out and out[-1].isdigit():
            out[-1] += "gb"  # "80 GB" -> "80gb"
            continue
        m = _MEM_TOKEN.match(tok)
        if m:
            tok = f"{m.group(1)}gb"  # "80G", "80GiB" -> "80gb"
        out.append(tok)
    return out


def normalise(name: str) -> str:
    """Canonical lookup key for a GPU name.

    Lowercases, drops vendor/marketing words ("nvidia", "geforce", "amd",
    "radeon", "apple", "instinct", "tesla", ...), writes memory sizes as
    "<n>gb" ("80G", "80 GB", "80GiB" all become "80gb") and removes spaces,
    dashes, underscores and other punctuation:
    ``normalise("NVIDIA GeForce RTX 4090") == "rtx4090"``,
    ``normalise("A100-80G") == "a10080gb"``.
    """
    return "".join(_tokens(name))


def _split_memory(name: str) -> tuple[str, list[int]]:
    """(key without memory-size tokens, the sizes in GiB that were given)."""
    base: list[str] = []
    sizes: list[int] = []
    for tok in _tokens(name):
        m = re.match(r"^(\d+)gb$", tok)
        if m:
            sizes.append(int(m.group(1)))
        else:
            base.append(tok)
    return "".join(base), sizes


# --------------------------------------------------------------------------
# the rows


def _derived_aliases(name: str, memory_gib: int) -> list[str]:
    out = []
    # "RTX 4090" -> "4090"; "RX 7900 XTX" -> "7900 XTX"
    for prefix in ("RTX ", "RX "):
        if name.startswith(prefix):
            out.append(name[len(prefix) :])
    # "RTX 4090" -> "RTX 4090 24GB" (unless the name already carries a size)
    if not re.search(r"\d+\s*GB", name, re.IGNORECASE):
        out.append(f"{name} {memory_gib}GB")
    return out


def _e(
    name: str,
    vendor: str,
    backend: str,
    memory_gib: int,
    bandwidth_gb_s: float,
    memory_type: str,
    interconnect: str,
    link_gb_s: float | None,
    pcie: str,
    aliases: tuple[str, ...],
    source: str,
    *,
    unified: bool = False,
    logical_devices: int = 1,
    notes: str = "",
) -> CatalogEntry:
    all_aliases: list[str] = []
    for a in (*aliases, *_derived_aliases(name, memory_gib)):
        if a not in all_aliases and normalise(a) != normalise(name):
            all_aliases.append(a)
    return CatalogEntry(
        name=name,
        vendor=vendor,
        backend=backend,
        memory_bytes=memory_gib * GIB,
        bandwidth_bytes_per_s=bandwidth_gb_s * 1e9,
        memory_type=memory_type,
        interconnect=interconnect,
        link_bytes_per_s=None if link_gb_s is None else link_gb_s * 1e9,
        pcie=pcie,
        aliases=tuple(all_aliases),
        source=source,
        unified_memory=unified,
        logical_devices=logical_devices,
        notes=notes,
    )


_NV_DC = "https://www.nvidia.com/en-us/data-center/"
_NV_GF = "https://www.nvidia.com/en-us/geforce/graphics-cards/"
_AMD_INSTINCT = "https://www.amd.com/en/products/accelerators/instinct/"
_AMD_RX = "https://www.amd.com/en/products/graphics/desktops/radeon/7000-series/"
_PCIE_ONLY = "PCIe only (no NVLink)"

CATALOG: tuple[CatalogEntry, ...] = (
    # ---------------------------------------------------------------- NVIDIA datacenter
    _e(
        "B200",
        "NVIDIA",
        "CUDA",
        180,
        8000,
        "HBM3e",
        "SXM6; NVLink 5 1.8 TB/s per GPU via NVSwitch (HGX/DGX B200)",
        1800,
        "PCIe 5.0 x16",
        ("B200 SXM", "HGX B200", "DGX B200", "B200 180GB SXM"),
        _NV_DC + "dgx-b200/",
        notes="HGX/DGX B200 configuration (8 x 180 GB = 1,440 GB); drivers report ~178 GiB. "
        "Some B200 variants (GB200) carry 192 GB.",
    ),
    _e(
        "H200",
        "NVIDIA",
        "CUDA",
        141,
        4800,
        "HBM3e",
        "SXM5: NVLink 4 900 GB/s via NVSwitch; H200 NVL (PCIe): 2- or 4-way NVLink bridge 900 GB/s",
        900,
        "PCIe 5.0 x16",
        ("H200 SXM", "H200 SXM5", "H200 NVL", "H200 141GB SXM", "H200 NVL 141GB"),
        _NV_DC + "h200/",
        notes="H200 SXM and H200 NVL share memory size and bandwidth.",
    ),
    _e(
        "H100 SXM",
        "NVIDIA",
        "CUDA",
        80,
        3350,
        "HBM3",
        "SXM5; NVLink 4 900 GB/s via NVSwitch",
        900,
        "PCIe 5.0 x16",
        ("H100 SXM5", "H100 80GB", "H100 80GB SXM", "H100 SXM5 80GB", "H100 80GB SXM5", "H100 HBM3"),
        _NV_DC + "h100/",
    ),
    _e(
        "H100 PCIe",
        "NVIDIA",
        "CUDA",
        80,
        2000,
        "HBM2e",
        "PCIe card; optional NVLink bridge between pairs, 600 GB/s",
        600,
        "PCIe 5.0 x16",
        ("H100 80GB PCIe", "H100 PCIe 80GB"),
        _NV_DC + "h100/",
    ),
    _e(
        "H100 NVL",
        "NVIDIA",
        "CUDA",
        94,
        3900,
        "HBM3",
        "PCIe card; NVLink bridge between pairs, 600 GB/s",
        600,
        "PCIe 5.0 x16",
        ("H100 94GB", "H100 94GB NVL", "H100 NVL 94GB"),
        _NV_DC + "h100/",
    ),
    _e(
        "A100 80GB SXM",
        "NVIDIA",
        "CUDA",
        80,
        2039,
        "HBM2e",
        "SXM4; NVLink 3 600 GB/s via NVSwitch",
        600,
        "PCIe 4.0 x16",
        ("A100 80GB", "A100 SXM 80GB", "A100 SXM4 80GB", "A100 80GB SXM4"),
        _NV_DC + "a100/",
    ),
    _e(
        "A100 80GB PCIe",
        "NVIDIA",
        "CUDA",
        80,
        1935,
        "HBM2e",
        "PCIe card; optional NVLink bridge between pairs, 600 GB/s",
        600,
        "PCIe 4.0 x16",
        ("A100 PCIe 80GB",),
        _NV_DC + "a100/",
    ),
    _e(
        "A100 40GB SXM",
        "NVIDIA",
        "CUDA",
        40,
        1555,
        "HBM2",
        "SXM4; NVLink 3 600 GB/s via NVSwitch",
        600,
        "PCIe 4.0 x16",
        ("A100 40GB", "A100 SXM 40GB", "A100 SXM4 40GB", "A100 40GB SXM4"),
        _NV_DC + "a100/",
    ),
    _e(
        "A100 40GB PCIe",
        "NVIDIA",
        "CUDA",
        40,
        1555,
        "HBM2",
        "PCIe card; optional NVLink bridge between pairs, 600 GB/s",
        600,
        "PCIe 4.0 x16",
        ("A100 PCIe 40GB",),
        _NV_DC + "a100/",
    ),
    _e("L40S", "NVIDIA", "CUDA", 48, 864, "GDDR6 (ECC)", _PCIE_ONLY, None, "PCIe 4.0 x16", (), _NV_DC + "l40s/"),
    _e("L40", "NVIDIA", "CUDA", 48, 864, "GDDR6 (ECC)", _PCIE_ONLY, None, "PCIe 4.0 x16", (), _NV_DC + "l40/"),
    _e("L4", "NVIDIA", "CUDA", 24, 300, "GDDR6", _PCIE_ONLY, None, "PCIe 4.0 x16", (), _NV_DC + "l4/"),
    _e("A10", "NVIDIA", "CUDA", 24, 600, "GDDR6", _PCIE_ONLY, None, "PCIe 4.0 x16", (), _NV_DC + "products/a10-gpu/"),
    _e(
        "A40",
        "NVIDIA",
        "CUDA",
        48,
        696,
        "GDDR6 (ECC)",
        "PCIe card; NVLink bridge between pairs, 112.5 GB/s",
        112.5,
        "PCIe 4.0 x16",
        (),
        _NV_DC + "a40/",
    ),
    _e(
        "V100 32GB",
        "NVIDIA",
        "CUDA",
        32,
        900,
        "HBM2",
        "SXM2; NVLink 2 300 GB/s (the PCIe card has no NVLink)",
        300,
        "PCIe 3.0 x16",
        ("V100 SXM2 32GB", "V100 32GB SXM2"),
        _NV_DC + "v100/",
        notes="SXM2 figures; V100 PCIe has the same memory and 900 GB/s but no NVLink.",
    ),
    _e(
        "V100 16GB",
        "NVIDIA",
        "CUDA",
        16,
        900,
        "HBM2",
        "SXM2; NVLink 2 300 GB/s (the PCIe card has no NVLink)",
        300,
        "PCIe 3.0 x16",
        ("V100 SXM2 16GB", "V100 16GB SXM2"),
        _NV_DC + "v100/",
        notes="SXM2 figures; V100 PCIe has the same memory and 900 GB/s but no NVLink.",
    ),
    _e("T4", "NVIDIA", "CUDA", 16, 320, "GDDR6", _PCIE_ONLY, None, "PCIe 3.0 x16", (), _NV_DC + "tesla-t4/"),
    # ---------------------------------------------------------------- NVIDIA workstation
    _e(
        "RTX PRO 6000 Blackwell",
        "NVIDIA",
        "CUDA",
        96,
        1792,
        "GDDR7 (ECC)",
        _PCIE_ONLY,
        None,
        "PCIe 5.0 x16",
        (
            "RTX PRO 6000",
            "RTX PRO 6000 Blackwell Workstation Edition",
            "RTX PRO 6000 Blackwell Max-Q",
            "RTX PRO 6000 Blackwell Server Edition",
        ),
        "https://www.nvidia.com/en-us/products/workstations/professional-desktop-gpus/rtx-pro-6000/",
    ),
    _e(
        "RTX 6000 Ada",
        "NVIDIA",
        "CUDA",
        48,
        960,
        "GDDR6 (ECC)",
        _PCIE_ONLY,
        None,
        "PCIe 4.0 x16",
        ("RTX 6000 Ada Generation", "RTX6000 Ada"),
        "https://www.nvidia.com/en-us/design-visualization/rtx-6000/",
    ),
    _e(
        "RTX A6000",
        "NVIDIA",
        "CUDA",
        48,
        768,
        "GDDR6 (ECC)",
        "NVLink bridge between pairs, 112.5 GB/s",
        112.5,
        "PCIe 4.0 x16",
        (),
        "https://www.nvidia.com/en-us/design-visualization/rtx-a6000/",
    ),
    # ---------------------------------------------------------------- NVIDIA GeForce
    _e("RTX 5090", "NVIDIA", "CUDA", 32, 1792, "GDDR7", _PCIE_ONLY, None, "PCIe 5.0 x16", (), _NV_GF + "50-series/rtx-5090/"),
    _e("RTX 5080", "NVIDIA", "CUDA", 16, 960, "GDDR7", _PCIE_ONLY, None, "PCIe 5.0 x16", (), _NV_GF + "50-series/rtx-5080/"),
    _e(
        "RTX 5070 Ti",
        "NVIDIA",
        "CUDA",
        16,
        896,
        "GDDR7",
        _PCIE_ONLY,
        None,
        "PCIe 5.0 x16",
        (),
        _NV_GF + "50-series/rtx-5070-family/",
    ),
    _e(
        "RTX 5070",
        "NVIDIA",
        "CUDA",
        12,
        672,
        "GDDR7",
        _PCIE_ONLY,
        None,
        "PCIe 5.0 x16",
        (),
        _NV_GF + "50-series/rtx-5070-family/",
    ),
    _e(
        "RTX 5060 Ti 16GB",
        "NVIDIA",
        "CUDA",
        16,
        448,
        "GDDR7",
        _PCIE_ONLY,
        None,
        "PCIe 5.0 x8",
        (),
        _NV_GF + "50-series/rtx-5060-family/",
    ),
    _e(
        "RTX 5060 Ti 8GB",
        "NVIDIA",
        "CUDA",
        8,
        448,
        "GDDR7",
        _PCIE_ONLY,
        None,
        "PCIe 5.0 x8",
        (),
        _NV_GF + "50-series/rtx-5060-family/",
    ),
    _e("RTX 4090", "NVIDIA", "CUDA", 24, 1008, "GDDR6X", _PCIE_ONLY, None, "PCIe 4.0 x16", (), _NV_GF + "40-series/rtx-4090/"),
    _e(
        "RTX 4080 SUPER",
        "NVIDIA",
        "CUDA",
        16,
        736,
        "GDDR6X",
        _PCIE_ONLY,
        None,
        "PCIe 4.0 x16",
        ("RTX 4080S", "4080 S"),
        _NV_GF + "40-series/rtx-4080-family/",
    ),
    _e(
        "RTX 4080",
        "NVIDIA",
        "CUDA",
        16,
        716.8,
        "GDDR6X",
        _PCIE_ONLY,
        None,
        "PCIe 4.0 x16",
        (),
        _NV_GF + "40-series/rtx-4080-family/",
    ),
    _e(
        "RTX 4070 Ti SUPER",
        "NVIDIA",
        "CUDA",
        16,
        672,
        "GDDR6X",
        _PCIE_ONLY,
        None,
        "PCIe 4.0 x16",
        ("RTX 4070 Ti S", "RTX 4070TiS"),
        _NV_GF + "40-series/rtx-4070-family/",
    ),
    _e(
        "RTX 4070 Ti",
        "NVIDIA",
        "CUDA",
        12,
        504,
        "GDDR6X",
        _PCIE_ONLY,
        None,
        "PCIe 4.0 x16",
        (),
        _NV_GF + "40-series/rtx-4070-family/",
    ),
    _e(
        "RTX 4070 SUPER",
        "NVIDIA",
        "CUDA",
        12,
        504,
        "GDDR6X",
        _PCIE_ONLY,
        None,
        "PCIe 4.0 x16",
        ("RTX 4070S", "4070 S"),
        _NV_GF + "40-series/rtx-4070-family/",
    ),
    _e(
        "RTX 4070",
        "NVIDIA",
        "CUDA",
        12,
        504,
        "GDDR6X",
        _PCIE_ONLY,
        None,
        "PCIe 4.0 x16",
        (),
        _NV_GF + "40-series/rtx-4070-family/",
    ),
    _e(
        "RTX 4060 Ti 16GB",
        "NVIDIA",
        "CUDA",
        16,
        288,
        "GDDR6",
        _PCIE_ONLY,
        None,
        "PCIe 4.0 x8",
        (),
        _NV_GF + "40-series/rtx-4060-4060ti/",
    ),
    _e(
        "RTX 4060 Ti 8GB",
        "NVIDIA",
        "CUDA",
        8,
        288,
        "GDDR6",
        _PCIE_ONLY,
        None,
        "PCIe 4.0 x8",
        (),
        _NV_GF + "40-series/rtx-4060-4060ti/",
    ),
    _e("RTX 4060", "NVIDIA", "CUDA", 8, 272, "GDDR6", _PCIE_ONLY, None, "PCIe 4.0 x8", (), _NV_GF + "40-series/rtx-4060-4060ti/"),
    _e(
        "RTX 3090 Ti",
        "NVIDIA",
        "CUDA",
        24,
        1008,
        "GDDR6X",
        "NVLink bridge between pairs, 112.5 GB/s",
        112.5,
        "PCIe 4.0 x16",
        (),
        _NV_GF + "30-series/rtx-3090-3090ti/",
    ),
    _e(
        "RTX 3090",
        "NVIDIA",
        "CUDA",
        24,
        936,
        "GDDR6X",
        "NVLink bridge between pairs, 112.5 GB/s",
        112.5,
        "PCIe 4.0 x16",
        (),
        _NV_GF + "30-series/rtx-3090-3090ti/",
    ),
    _e(
        "RTX 3080 Ti",
        "NVIDIA",
        "CUDA",
        12,
        912,
        "GDDR6X",
        _PCIE_ONLY,
        None,
        "PCIe 4.0 x16",
        (),
        _NV_GF + "30-series/rtx-3080-3080ti/",
    ),
    _e(
        "RTX 3080 12GB",
        "NVIDIA",
        "CUDA",
        12,
        912,
        "GDDR6X",
        _PCIE_ONLY,
        None,
        "PCIe 4.0 x16",
        (),
        _NV_GF + "30-series/rtx-3080-3080ti/",
    ),
    _e(
        "RTX 3080 10GB",
        "NVIDIA",
        "CUDA",
        10,
        760,
        "GDDR6X",
        _PCIE_ONLY,
        None,
        "PCIe 4.0 x16",
        (),
        _NV_GF + "30-series/rtx-3080-3080ti/",
    ),
    _e(
        "RTX 3070", "NVIDIA", "CUDA", 8, 448, "GDDR6", _PCIE_ONLY, None, "PCIe 4.0 x16", (), _NV_GF + "30-series/rtx-3070-3070ti/"
    ),
    _e(
        "RTX 3060 12GB",
        "NVIDIA",
        "CUDA",
        12,
        360,
        "GDDR6",
        _PCIE_ONLY,
        None,
        "PCIe 4.0 x16",
        (),
        _NV_GF + "30-series/rtx-3060-3060ti/",
    ),
    _e(
        "RTX 3060 8GB",
        "NVIDIA",
        "CUDA",
        8,
        240,
        "GDDR6",
        _PCIE_ONLY,
        None,
        "PCIe 4.0 x16",
        (),
        _NV_GF + "30-series/rtx-3060-3060ti/",
    ),
    _e(
        "RTX 2080 Ti",
        "NVIDIA",
        "CUDA",
        11,
        616,
        "GDDR6",
        "NVLink bridge between pairs, 100 GB/s",
        100,
        "PCIe 3.0 x16",
        (),
        _NV_GF + "rtx-2080-ti/",
    ),
    # ---------------------------------------------------------------- AMD Instinct
    _e(
        "MI325X",
        "AMD",
        "ROCm",
        256,
        6000,
        "HBM3e",
        "OAM; Infinity Fabric, 7 links x 128 GB/s = 896 GB/s",
        896,
        "PCIe 5.0 x16",
        (),
        _AMD_INSTINCT + "mi300/mi325x.html",
    ),
    _e(
        "MI300X",
        "AMD",
        "ROCm",
        192,
        5300,
        "HBM3",
        "OAM; Infinity Fabric, 7 links x 128 GB/s = 896 GB/s",
        896,
        "PCIe 5.0 x16",
        (),
        _AMD_INSTINCT + "mi300/mi300x.html",
    ),
    _e(
        "MI250X",
        "AMD",
        "ROCm",
        128,
        3276.8,
        "HBM2e",
        "OAM; Infinity Fabric, 8 links x 100 GB/s = 800 GB/s",
        800,
        "PCIe 4.0 x16",
        (),
        _AMD_INSTINCT + "mi200/mi250x.html",
        logical_devices=2,
        notes="Two GCDs: ROCm and llama.cpp see 2 devices of 64 GB and ~1.6 TB/s each.",
    ),
    _e(
        "MI210",
        "AMD",
        "ROCm",
        64,
        1638.4,
        "HBM2e",
        "PCIe card; Infinity Fabric bridge, 3 links x 100 GB/s = 300 GB/s",
        300,
        "PCIe 4.0 x16",
        (),
        _AMD_INSTINCT + "mi200/mi210.html",
    ),
    # ---------------------------------------------------------------- AMD Radeon
    _e(
        "RX 7900 XTX",
        "AMD",
        "ROCm",
        24,
        960,
        "GDDR6",
        "PCIe only",
        None,
        "PCIe 4.0 x16",
        (),
        _AMD_RX + "amd-radeon-rx-7900xtx.html",
    ),
    _e(
        "RX 7900 XT",
        "AMD",
        "ROCm",
        20,
        800,
        "GDDR6",
        "PCIe only",
        None,
        "PCIe 4.0 x16",
        (),
        _AMD_RX + "amd-radeon-rx-7900xt.html",
    ),
    _e(
        "RX 7900 GRE",
        "AMD",
        "ROCm",
        16,
        576,
        "GDDR6",
        "PCIe only",
        None,
        "PCIe 4.0 x16",
        (),
        _AMD_RX + "amd-radeon-rx-7900-gre.html",
    ),
    _e(
        "RX 7800 XT",
        "AMD",
        "ROCm",
        16,
        624,
        "GDDR6",
        "PCIe only",
        None,
        "PCIe 4.0 x16",
        (),
        _AMD_RX + "amd-radeon-rx-7800-xt.html",
    ),
    _e(
        "Radeon PRO W7900",
        "AMD",
        "ROCm",
        48,
        864,
        "GDDR6 (ECC)",
        "PCIe only",
        None,
        "PCIe 4.0 x16",
        ("W7900", "PRO W7900"),
        "https://www.amd.com/en/products/graphics/workstations/radeon-pro/w7900.html",
    ),
    # ---------------------------------------------------------------- Apple Silicon
    _e(
        "M4 Max",
        "Apple",
        "Metal",
        128,
        546,
        "LPDDR5X (unified)",
        "single SoC; unified memory",
        None,
        "",
        (),
        "https://www.apple.com/newsroom/2024/10/apple-introduces-m4-pro-and-m4-max/",
        unified=True,
        notes="16-core CPU / 40-core GPU part; the 14-core M4 Max has 410 GB/s and up to 36 GB.",
    ),
    _e(
        "M4 Pro",
        "Apple",
        "Metal",
        64,
        273,
        "LPDDR5X (unified)",
        "single SoC; unified memory",
        None,
        "",
        (),
        "https://www.apple.com/newsroom/2024/10/apple-introduces-m4-pro-and-m4-max/",
        unified=True,
    ),
    _e(
        "M3 Ultra",
        "Apple",
        "Metal",
        512,
        819,
        "LPDDR5 (unified)",
        "single SoC (two M3 Max dies, UltraFusion); unified memory",
        None,
        "",
        (),
        "https://www.apple.com/newsroom/2025/03/apple-reveals-m3-ultra-taking-apple-silicon-to-a-new-extreme/",
        unified=True,
    ),
    _e(
        "M3 Max",
        "Apple",
        "Metal",
        128,
        400,
        "LPDDR5 (unified)",
        "single SoC; unified memory",
        None,
        "",
        (),
        "https://www.apple.com/newsroom/2023/10/apple-unveils-m3-m3-pro-and-m3-max-the-most-advanced-chips-for-a-personal-computer/",
        unified=True,
        notes="16-core CPU / 40-core GPU part; the 14-core M3 Max has 300 GB/s and up to 96 GB.",
    ),
    _e(
        "M2 Ultra",
        "Apple",
        "Metal",
        192,
        800,
        "LPDDR5 (unified)",
        "single SoC (two M2 Max dies, UltraFusion); unified memory",
        None,
        "",
        (),
        "https://www.apple.com/newsroom/2023/06/apple-introduces-m2-ultra/",
        unified=True,
    ),
    _e(
        "M2 Max",
        "Apple",
        "Metal",
        96,
        400,
        "LPDDR5 (unified)",
        "single SoC; unified memory",
        None,
        "",
        (),
        "https://www.apple.com/newsroom/2023/01/apple-unveils-m2-pro-and-m2-max-next-generation-chips-for-next-level-workflows/",
        unified=True,
    ),
    _e(
        "M1 Ultra",
        "Apple",
        "Metal",
        128,
        800,
        "LPDDR5 (unified)",
        "single SoC (two M1 Max dies, UltraFusion); unified memory",
        None,
        "",
        (),
        "https://www.apple.com/newsroom/2022/03/apple-unveils-m1-ultra-the-worlds-most-powerful-chip-for-a-personal-computer/",
        unified=True,
    ),
    _e(
        "M1 Max",
        "Apple",
        "Metal",
        64,
        400,
        "LPDDR5 (unified)",
        "single SoC; unified memory",
        None,
        "",
        (),
        "https://www.apple.com/newsroom/2021/10/introducing-m1-pro-and-m1-max-the-most-powerful-chips-apple-has-ever-built/",
        unified=True,
    ),
)

#: Family names that cover several rows; looking them up raises
#: AmbiguousCardError listing the variants (in this order).
_AMBIGUOUS_SPEC: dict[str, tuple[str, ...]] = {
    "A100": ("A100 80GB SXM", "A100 80GB PCIe", "A100 40GB SXM", "A100 40GB PCIe"),
    "A100 SXM": ("A100 80GB SXM", "A100 40GB SXM"),
    "A100 SXM4": ("A100 80GB SXM", "A100 40GB SXM"),
    "A100 PCIe": ("A100 80GB PCIe", "A100 40GB PCIe"),
    "H100": ("H100 SXM", "H100 PCIe", "H100 NVL"),
    "V100": ("V100 32GB", "V100 16GB"),
    "V100 SXM2": ("V100 32GB", "V100 16GB"),
    "RTX 6000": ("RTX 6000 Ada", "RTX PRO 6000 Blackwell"),
    "RTX 5060 Ti": ("RTX 5060 Ti 16GB", "RTX 5060 Ti 8GB"),
    "RTX 4060 Ti": ("RTX 4060 Ti 16GB", "RTX 4060 Ti 8GB"),
    "RTX 3080": ("RTX 3080 10GB", "RTX 3080 12GB"),
    "RTX 3060": ("RTX 3060 12GB", "RTX 3060 8GB"),
    "RX 7900": ("RX 7900 XTX", "RX 7900 XT", "RX 7900 GRE"),
    "MI300": ("MI300X", "MI325X"),
}


def _build_indexes() -> tuple[dict[str, CatalogEntry], dict[str, tuple[str, ...]]]:
    index: dict[str, CatalogEntry] = {}
    for entry in CATALOG:
        for spelling in (entry.name, *entry.aliases):
            key = normalise(spelling)
            other = index.get(key)
            if other is not None and other is not entry:
                raise RuntimeError(f"catalog: {spelling!r} names both {other.name!r} and {entry.name!r}")
            index[key] = entry
    ambiguous: dict[str, tuple[str, ...]] = {}
    for stem, variants in _AMBIGUOUS_SPEC.items():
        spellings = [stem]
        for prefix in ("RTX ", "RX "):
            if stem.startswith(prefix):
                spellings.append(stem[len(prefix) :])
        for spelling in spellings:
            key = normalise(spelling)
            if key in index:
                raise RuntimeError(f"catalog: ambiguous name {spelling!r} is also a row")
            ambiguous[key] = variants
    return index, ambiguous


_INDEX, _AMBIGUOUS = _build_indexes()
_BY_NAME = {e.name: e for e in CATALOG}


# --------------------------------------------------------------------------
# lookup


def close_matches(name: str, n: int = 5) -> list[str]:
    """Up to ``n`` canonical catalog names that look like ``name``."""
    key = normalise(name)
    if not key or n <= 0:
        return []
    keys = list(_INDEX) + list(_AMBIGUOUS)
    out: list[str] = []
    for hit in difflib.get_close_matches(key, keys, n=len(keys), cutoff=0.6):
        names = [_INDEX[hit].name] if hit in _INDEX else list(_AMBIGUOUS[hit])
        for canonical in names:
            if canonical not in out:
                out.append(canonical)
        if len(out) >= n:
            break
    return out[:n]


def lookup(name: str) -> CatalogEntry:
    """The catalog row for a user's spelling of a GPU name.

    Matches the canonical name or any alias after :func:`normalise`.  A memory
    size may be added to any name ("RTX 4090 24GB", "A100 SXM4 80GB") and must
    then agree with the row.  Raises :class:`AmbiguousCardError` for family
    names that cover several rows ("A100", "RTX 3080") and
    :class:`UnknownCardError` (with up to five close matches) otherwise.
    """
    key = normalise(name)
    entry = _INDEX.get(key)
    if entry is not None:
        return entry
    if key in _AMBIGUOUS:
        raise AmbiguousCardError(name, list(_AMBIGUOUS[key]))

    # "<family> <size>": pick the variant with that much memory.
    base, sizes = _split_memory(name)
    if base and sizes:
        if base in _INDEX:
            candidates = [_INDEX[base]]
        elif base in _AMBIGUOUS:
            candidates = [_BY_NAME[v] for v in _AMBIGUOUS[base]]
        else:
            candidates = []
        matching = [c for c in candidates if c.memory_bytes // GIB in sizes]
        if len(matching) == 1:
            return matching[0]
        if len(matching) > 1:
            raise AmbiguousCardError(name, [c.name for c in matching])
        if candidates:
            listed = ", ".join(f"{c.name} ({c.memory_bytes // GIB} GB)" for c in candidates)
            raise UnknownCardError(
                name,
                [c.name for c in candidates],
                "{p.gpus} {name!r} is not a GPU the catalog knows: it lists {listed}; for another memory size "
                "give the size itself, e.g. {size}GiB " + _CATALOG_HINT,
                listed=listed,
                size=sizes[0],
            )

    raise UnknownCardError(name, close_matches(name))
