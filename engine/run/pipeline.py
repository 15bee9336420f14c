"""The render pipeline: step name -> step function, in the order the runner executes them.

The runner imports `PIPELINE`; the mux step's artifact named `video` is the job's output, and
`aura.engine.tools.media.probe_output(path, settings)` describes it for JobSucceeded.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from aura.engine.config.inputs import STEP_NAMES
from aura.engine.run.context import Step
from aura.engine.steps.broll import broll
from aura.engine.steps.mux import mux
from aura.engine.steps.narration import narration
from aura.engine.steps.preflight import preflight
from aura.engine.steps.subtitles import subtitles

__all__ = ["OUTPUT_ARTIFACT", "PIPELINE"]

#: the artifact (of the last step) that is the job's output video
OUTPUT_ARTIFACT = "video"

PIPELINE: Mapping[str, Step] = MappingProxyType(
    {
        "preflight": preflight,
        "narration": narration,
        "broll": broll,
        "subtitles": subtitles,
        "mux": mux,
    }
)

if tuple(PIPELINE) != STEP_NAMES:  # the events and the UI list steps by STEP_NAMES
    raise RuntimeError(f"PIPELINE {tuple(PIPELINE)} does not match STEP_NAMES {STEP_NAMES}")
