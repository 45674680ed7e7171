"""Engine directories: the manifest contract between `python -m rgpt_rt.build` and the runtime."""

from .manifest import FORMAT, FORMAT_VERSION, EngineManifest, is_engine_dir, read_manifest, sha256_file

__all__ = ["FORMAT", "FORMAT_VERSION", "EngineManifest", "is_engine_dir", "read_manifest", "sha256_file"]
