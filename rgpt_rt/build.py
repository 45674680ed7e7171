"""`python -m rgpt_rt.build`: the engine builder's command line (build time only; needs torch and onnx).

The runtime never imports this module or build_engine.
"""

import sys

if __name__ == "__main__":
    try:
        from build_engine.cli import main
    except ImportError as exc:
        print(
            f"error: the engine builder needs the build extras (pip install 'rgpt_rt[torch,onnx]'): {exc}",
            file=sys.stderr,
        )
        sys.exit(2)
    sys.exit(main())
