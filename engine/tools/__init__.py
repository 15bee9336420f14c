"""The programs and services a render uses (ffmpeg, ffprobe, espeak-ng, the speech API, the
GPU, child processes) and the system check over them."""
