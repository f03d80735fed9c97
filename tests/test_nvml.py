"""gpusplit.devices.nvml against a recorded fake of pynvml (this machine has no NVIDIA driver)."""

from __future__ import annotations

import inspect
import sys

import fake_pynvml as fk
import pytest

from gpusplit.devices.device import normalise_pci_bus_id
from gpusplit.devices.nvml import NvmlReport, cuda_visible, match_by_pci, query_nvml, resolve_cuda_visible

MiB = 1024 * 1024


# -- the fake is faithful to the real pynvml --------------------------------------------------------
def test_fake_mirrors_real_pynvml_names_signatures_and_constants():
    real = pytest.importorskip("pynvml")
    for name in fk.FAKE_FUNCTIONS:
        real_params = list(inspect.signature(getattr(real, name)).parameters)
        fake_params = list(inspect.signature(getattr(fk.FakePynvml, name)).parameters)[1:]  # less self
        assert fake_params == real_params, name
    for name, value in fk.CONSTANTS.items():
        assert getattr(real, name) == value, name
    for name, cls in fk.ERRORS.items():
        real_cls = getattr(real, name)
        assert issubclass(real_cls, real.NVMLError)
        if cls is not fk.NVMLError:
            assert real_cls().value == cls.value, name
            assert str(real_cls()) == str(cls()), name


def test_real_pynvml_without_a_driver_reports_why_and_does_not_raise():
    report = query_nvml()  # the real pynvml
    assert isinstance(report, NvmlReport)
    if report.available:  # a machine with a driver: nothing more to say here
        assert report.reason is None
        return
    assert report.gpus == ()
    assert report.reason
    try:
        import pynvml
    except ImportError:
        assert report.reason == "nvidia-ml-py is not installed"
        return
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        assert report.reason == "NVML not found (no NVIDIA driver)"
    except pynvml.NVMLError_DriverNotLoaded:
        assert report.reason == "NVIDIA driver not loaded"
    except (pynvml.NVMLError, OSError):
        pass
    else:  # pragma: no cover - NVML came up after all
        pynvml.nvmlShutdown()


def test_pynvml_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    report = query_nvml()
    assert report == NvmlReport(available=False, reason="nvidia-ml-py is not installed")


# -- init failures ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (fk.NVMLError_LibraryNotFound, "NVML not found (no NVIDIA driver)"),
        (fk.NVMLError_DriverNotLoaded(), "NVIDIA driver not loaded"),
        (fk.NVMLError_LibRmVersionMismatch, "NVML failed to initialise: RM has detected an NVML/RM version mismatch."),
        (fk.NVMLError(999), "NVML failed to initialise: NVML Error with code 999"),
        (
            OSError("libnvidia-ml.so.1: cannot open shared object file"),
            "NVML could not be loaded: libnvidia-ml.so.1: cannot open shared object file",
        ),
    ],
)
def test_init_failures(error, reason):
    nv = fk.failing_init(error)
    report = query_nvml(nv)
    assert report == NvmlReport(available=False, reason=reason)
    assert nv.calls == ["nvmlInit"]  # no shutdown after a failed init


def test_count_failure_still_shuts_down():
    nv = fk.h100_box()
    nv.nvmlDeviceGetCount = lambda: (_ for _ in ()).throw(fk.NVMLError_GpuIsLost())
    report = query_nvml(nv)
    assert not report.available and report.reason == "NVML could not count the GPUs: GPU is lost"
    assert report.driver_version == "550.54.15"
    assert nv.calls[-1] == "nvmlShutdown" and nv._initialised == 0


# -- recorded boxes ---------------------------------------------------------------------------------
def test_h100_sxm():
    nv = fk.h100_box()
    report = query_nvml(nv)
    assert report.available and report.reason is None and report.notes == ()
    assert (report.driver_version, report.cuda_driver_version) == ("550.54.15", "12.4")
    (gpu,) = report.gpus
    assert gpu.index == 0
    assert gpu.name == "NVIDIA H100 80GB HBM3"
    assert gpu.uuid == fk.H100_SXM["uuid"]
    assert gpu.pci_bus_id == "0000:18:00.0"  # from NVML's b"00000000:18:00.0"
    # memory v2: total = reserved + used + free
    assert gpu.total_bytes == 81559 * MiB
    assert gpu.reserved_bytes == 528 * MiB
    assert gpu.used_bytes == 1 * MiB
    assert gpu.free_bytes == (81559 - 528 - 1) * MiB
    assert (gpu.pcie_gen, gpu.pcie_width, gpu.pcie_gen_max, gpu.pcie_width_max) == (5, 16, 5, 16)
    assert gpu.nvlink_links_up == 18
    assert gpu.compute_capability == "9.0"
    assert (gpu.memory_bus_width_bits, gpu.memory_clock_max_mhz) == (5120, 2619)
    assert gpu.bandwidth_bytes_per_s == 5120 / 8 * 2619e6 * 2
    assert gpu.bandwidth_bytes_per_s == pytest.approx(3.35e12, rel=0.01)  # datasheet: 3.35 TB/s
    assert (gpu.driver_version, gpu.cuda_driver_version) == ("550.54.15", "12.4")
    # NVLink: 18 links read, the 19th answers InvalidArgument and ends the loop
    assert nv.calls.count("nvmlDeviceGetNvLinkState") == 19
    assert "nvmlDeviceGetMemoryInfo_v2" in nv.calls and "nvmlDeviceGetMemoryInfo" not in nv.calls
    assert nv.calls[0] == "nvmlInit" and nv.calls[-1] == "nvmlShutdown" and nv._initialised == 0


def test_nvlink_links_down_count_zero_not_none():
    h100 = dict(fk.H100_SXM, nvlink=[1] * 12 + [0] * 6)
    assert query_nvml(fk.FakePynvml([h100])).gpus[0].nvlink_links_up == 12
    bridgeless = dict(fk.H100_SXM, nvlink=[0] * 12)  # e.g. an H100 PCIe without its NVLink bridge
    assert query_nvml(fk.FakePynvml([bridgeless])).gpus[0].nvlink_links_up == 0


def test_mixed_box_4090_and_3060():
    report = query_nvml(fk.mixed_box())
    assert report.available and report.cuda_driver_version == "12.2"
    r3060, r4090 = report.gpus
    assert [g.index for g in report.gpus] == [0, 1]
    assert (r3060.name, r3060.pci_bus_id) == ("NVIDIA GeForce RTX 3060", "0000:21:00.0")
    assert (r4090.name, r4090.pci_bus_id) == ("NVIDIA GeForce RTX 4090", "0000:41:00.0")
    assert r4090.bandwidth_bytes_per_s == 384 / 8 * 10501e6 * 2
    assert r4090.bandwidth_bytes_per_s == pytest.approx(1008e9, rel=0.01)  # datasheet: 1008 GB/s
    assert r3060.bandwidth_bytes_per_s == pytest.approx(360e9, rel=0.01)  # datasheet: 360 GB/s
    assert r3060.nvlink_links_up is None and r4090.nvlink_links_up is None  # GeForce: NotSupported
    assert (r4090.pcie_gen, r4090.pcie_width, r4090.pcie_gen_max, r4090.pcie_width_max) == (4, 16, 4, 16)
    assert (r3060.pcie_gen, r3060.pcie_width, r3060.pcie_gen_max, r3060.pcie_width_max) == (1, 8, 4, 8)
    assert (r3060.compute_capability, r4090.compute_capability) == ("8.6", "8.9")
    assert r4090.total_bytes == 24564 * MiB and r4090.reserved_bytes == 309 * MiB
    assert r4090.free_bytes == (24564 - 309 - 427) * MiB


def test_old_driver_falls_back_to_memory_v1_and_unsupported_fields_are_none():
    nv = fk.old_driver_box()
    report = query_nvml(nv)
    assert report.available and report.cuda_driver_version == "11.4"
    r3060, r4090 = report.gpus
    # v1: no reservation of its own; it is counted in `used`
    assert r3060.reserved_bytes is None
    assert r3060.total_bytes == 12288 * MiB
    assert r3060.used_bytes == (261 + 12) * MiB
    assert r3060.free_bytes == (12288 - 261 - 12) * MiB
    assert nv.calls.count("nvmlDeviceGetMemoryInfo_v2") == 2 and nv.calls.count("nvmlDeviceGetMemoryInfo") == 2
    # no bus width: no bandwidth, but the clock is still there
    assert r4090.memory_bus_width_bits is None and r4090.bandwidth_bytes_per_s is None
    assert r4090.memory_clock_max_mhz == 10501
    # NotSupported fields are None, one field at a time
    assert (r3060.pcie_gen, r3060.pcie_width, r3060.compute_capability) == (None, None, None)
    assert (r3060.pcie_gen_max, r3060.pcie_width_max) == (4, 8)
    assert (r4090.pcie_gen, r4090.compute_capability) == (4, "8.9")


def test_older_pynvml_without_memory_v2():
    nv = fk.FakePynvml([dict(fk.H100_SXM)], missing=("nvmlMemory_v2",))
    (gpu,) = query_nvml(nv).gpus
    assert gpu.reserved_bytes is None and gpu.used_bytes == (528 + 1) * MiB
    assert "nvmlDeviceGetMemoryInfo_v2" not in nv.calls


def test_pynvml_whose_memory_info_takes_no_version():
    class OldSignature(fk.FakePynvml):
        def nvmlDeviceGetMemoryInfo(self, handle):  # nvidia-ml-py before memory v2
            return super().nvmlDeviceGetMemoryInfo(handle)

    (gpu,) = query_nvml(OldSignature([dict(fk.H100_SXM)])).gpus
    assert gpu.reserved_bytes is None and gpu.total_bytes == 81559 * MiB


def test_a_lost_gpu_is_skipped_with_a_note():
    report = query_nvml(fk.FakePynvml([dict(fk.RTX3060, lost=True), dict(fk.RTX4090)]))
    assert [(g.index, g.name) for g in report.gpus] == [(1, "NVIDIA GeForce RTX 4090")]
    assert len(report.notes) == 1 and "GPU 0" in report.notes[0] and "GPU is lost" in report.notes[0]


def test_str_bus_id_and_bytes_name_are_accepted():
    gpu = dict(fk.RTX4090, busId="00000000:41:00.0", name=b"NVIDIA GeForce RTX 4090")
    (info,) = query_nvml(fk.FakePynvml([gpu])).gpus
    assert (info.pci_bus_id, info.name) == ("0000:41:00.0", "NVIDIA GeForce RTX 4090")


# -- PCI bus ids ------------------------------------------------------------------------------------
def test_pci_bus_id_forms():
    assert normalise_pci_bus_id("00000000:01:00.0") == "0000:01:00.0"
    assert normalise_pci_bus_id(b"00000000:01:00.0") == "0000:01:00.0"
    assert normalise_pci_bus_id("0000:0A:00.0") == "0000:0a:00.0"
    assert normalise_pci_bus_id("00000000:01:00.0") == normalise_pci_bus_id("0000:01:00.0")


def test_match_by_pci():
    report = query_nvml(fk.mixed_box())
    for form in ("0000:41:00.0", "00000000:41:00.0", b"00000000:41:00.0", " 0000:41:00.0\n"):
        assert match_by_pci(report, form).name == "NVIDIA GeForce RTX 4090", form
    assert match_by_pci(report, "0000:21:00.0").name == "NVIDIA GeForce RTX 3060"
    assert match_by_pci(report, "0000:01:00.0") is None
    assert match_by_pci(report, None) is None and match_by_pci(report, "") is None


# -- CUDA_VISIBLE_DEVICES ---------------------------------------------------------------------------
PCI = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


@pytest.fixture(scope="module")
def mixed() -> NvmlReport:
    return query_nvml(fk.mixed_box())


def names(gpus) -> list[str]:
    return [g.name.removeprefix("NVIDIA GeForce RTX ") for g in gpus]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ["4090", "3060"]),  # unset: all, CUDA's default FASTEST_FIRST (approximated)
        (PCI, ["3060", "4090"]),  # unset: all, PCI order
        ({**PCI, "CUDA_VISIBLE_DEVICES": "1,0"}, ["4090", "3060"]),
        ({"CUDA_VISIBLE_DEVICES": "1,0"}, ["3060", "4090"]),  # integers index the fastest-first order
        ({**PCI, "CUDA_VISIBLE_DEVICES": "1"}, ["4090"]),
        ({"CUDA_VISIBLE_DEVICES": "GPU-8f3a"}, ["4090"]),  # unique UUID prefix
        ({"CUDA_VISIBLE_DEVICES": fk.RTX3060["uuid"]}, ["3060"]),  # whole UUID
        ({"CUDA_VISIBLE_DEVICES": "GPU-8f"}, []),  # ambiguous prefix: invalid, stops the list
        ({**PCI, "CUDA_VISIBLE_DEVICES": "0,bogus,1"}, ["3060"]),  # stops at the invalid entry
        ({**PCI, "CUDA_VISIBLE_DEVICES": "1,2,0"}, ["4090"]),  # out of range is invalid too
        ({"CUDA_VISIBLE_DEVICES": ""}, []),
        ({"CUDA_VISIBLE_DEVICES": "-1"}, []),
        ({**PCI, "CUDA_VISIBLE_DEVICES": "0, 1"}, ["3060", "4090"]),
        ({**PCI, "CUDA_VISIBLE_DEVICES": "MIG-3b0a4c1e-1111-2222-3333-444455556666,1"}, ["4090"]),
        ({**PCI, "CUDA_VISIBLE_DEVICES": "0,0"}, ["3060"]),
    ],
)
def test_cuda_visible(mixed, env, expected):
    assert names(cuda_visible(mixed, env)) == expected


def test_cuda_visible_notes(mixed):
    gpus, notes = resolve_cuda_visible(mixed, {**PCI, "CUDA_VISIBLE_DEVICES": "0,bogus,1"})
    assert names(gpus) == ["3060"] and len(notes) == 1 and "'bogus'" in notes[0]
    gpus, notes = resolve_cuda_visible(mixed, {"CUDA_VISIBLE_DEVICES": "MIG-abc"})
    assert gpus == [] and "MIG" in notes[0]
    assert resolve_cuda_visible(mixed, {"CUDA_VISIBLE_DEVICES": ""}) == ([], [])
    assert resolve_cuda_visible(mixed, {})[1] == []


def test_cuda_visible_reads_os_environ_by_default(mixed, monkeypatch):
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert names(cuda_visible(mixed)) == ["4090"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert names(cuda_visible(mixed)) == ["3060", "4090"]


def test_fastest_first_ties_fall_back_to_pci_order():
    twins = [dict(fk.RTX4090, busId=b"00000000:81:00.0", uuid="GPU-b"), dict(fk.RTX4090, busId=b"00000000:01:00.0", uuid="GPU-a")]
    report = query_nvml(fk.FakePynvml(twins))
    assert [g.pci_bus_id for g in cuda_visible(report, {})] == ["0000:01:00.0", "0000:81:00.0"]


def test_cuda_visible_without_nvml_is_empty():
    assert cuda_visible(NvmlReport(available=False, reason="x"), {}) == []
