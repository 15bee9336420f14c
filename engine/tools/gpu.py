"""NVIDIA GPU detection with pynvml (nvidia-ml-py): is there a GPU that can encode H.264?

Without the driver `nvmlInit()` raises NVMLError_LibraryNotFound; that simply means "no GPU".
A GPU without an NVENC unit (e.g. an H100) reports no H.264 encoder capacity and counts as
unusable for `encoder: nvenc`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GpuStatus", "detect", "use_nvenc"]


@dataclass(frozen=True)
class GpuStatus:
    """What pynvml found: the GPUs' names and whether one can encode H.264."""

    names: tuple[str, ...]
    can_encode: bool
    #: why no GPU was found (the NVML error), or "" when one was
    reason: str = ""

    @property
    def usable(self) -> bool:
        return bool(self.names) and self.can_encode


def detect() -> GpuStatus:
    """Ask NVML for NVIDIA GPUs and their H.264 encoder capacity."""
    try:
        import pynvml
    except ImportError:  # nvidia-ml-py is a dependency, but a stripped install may lack it
        return GpuStatus((), False, "pynvml is not installed")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return GpuStatus((), False, f"NVML: {e}")
    try:
        return _survey(pynvml)
    except pynvml.NVMLError as e:
        return GpuStatus((), False, f"NVML: {e}")
    finally:
        pynvml.nvmlShutdown()


def _survey(pynvml: object) -> GpuStatus:
    nvml = pynvml  # the module has no type information
    names: list[str] = []
    can_encode = False
    for i in range(nvml.nvmlDeviceGetCount()):  # type: ignore[attr-defined]
        handle = nvml.nvmlDeviceGetHandleByIndex(i)  # type: ignore[attr-defined]
        name = nvml.nvmlDeviceGetName(handle)  # type: ignore[attr-defined]
        names.append(name.decode() if isinstance(name, bytes) else str(name))
        try:
            query = nvml.NVML_ENCODER_QUERY_H264  # type: ignore[attr-defined]
            capacity = nvml.nvmlDeviceGetEncoderCapacity(handle, query)  # type: ignore[attr-defined]
        except nvml.NVMLError:  # type: ignore[attr-defined]
            capacity = 0
        can_encode = can_encode or capacity > 0
    return GpuStatus(tuple(names), can_encode, "" if names else "no NVIDIA GPU found")


def use_nvenc(encoder: str) -> bool:
    """Whether a job with `encoder` (auto, x264, nvenc) encodes with h264_nvenc."""
    if encoder == "x264":
        return False
    if encoder == "nvenc":
        return True  # preflight has already refused the job if no GPU can encode
    return detect().usable
