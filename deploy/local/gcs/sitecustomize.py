"""Python imports `sitecustomize` at start when it is on the path: with this folder on
PYTHONPATH and STORAGE_EMULATOR_HOST set, every productlens process (the CLI, Beam
workers) gets the emulator patches before a pipeline runs. See emulator_patches.py."""

import os

if os.environ.get("STORAGE_EMULATOR_HOST"):
    from emulator_patches import configure_beam_for_emulator

    configure_beam_for_emulator()
