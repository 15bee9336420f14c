"""Step `preflight`: check the machine for this job before any work; it makes no artifact.

The first failing check fails the step with its own code (FFmpegNotFound, OutOfDiskSpace,
RequiresNvidiaGPU, MissingApiKey:{KEY}, ...). Warnings (e.g. encoder `auto` without a GPU
falling back to libx264) become JobWarnings. Retries run it again: the machine may have changed.
"""

from __future__ import annotations

from aura.engine.errors.taxonomy import AuraError, make_error
from aura.engine.run.context import StepContext
from aura.engine.tools.preflight import job_findings
from aura.projections.events import Artifact

__all__ = ["ENCODER_FALLBACK", "preflight"]

#: the JobWarning code of encoder `auto` falling back to libx264
ENCODER_FALLBACK = "EncoderFallback"


async def preflight(ctx: StepContext) -> list[Artifact]:
    """Run the job's checks; raise the first error, warn about the rest."""
    findings = await job_findings(ctx.settings, ctx.brief, ctx.options, ctx.work_dir)
    for finding in findings:
        if finding.failed and finding.code is not None:
            info = make_error(
                finding.code,
                finding.message,
                remediation=finding.remediation,
                details=finding.details,
                step=ctx.step,
                correlation_id=ctx.correlation_id,
            )
            raise AuraError(info)
        if finding.status == "warning":
            code = ENCODER_FALLBACK if finding.check == "gpu" else finding.code or "Warning"
            await ctx.warn(code, finding.message)
    # One tick at the end only: the checks take well under a second.
    await ctx.progress(100.0, "machine checked", 0.0)
    return []
