"""CapHuman studio: ``python app.py [--host H] [--port P] [--weights DIR] [--device auto|cpu|cuda]
[--head auto|builtin|PATH]``. Parses flags and launches; the logic lives in ``caphuman.studio``
and the layout in ``demo/``.

Binds 127.0.0.1 unless ``--host`` is given or it runs on Hugging Face Spaces (``SPACE_ID``).
"""

# ZeroGPU needs `spaces` imported before torch; off Spaces its decorator is a no-op.
try:
    import spaces  # noqa: F401
except ImportError:  # pragma: no cover - spaces is in requirements
    spaces = None

import argparse
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="CapHuman studio (Gradio)")
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1; 0.0.0.0 on Spaces)")
    p.add_argument("--port", type=int, default=None, help="port (default $GRADIO_SERVER_PORT or 7860)")
    p.add_argument("--weights", default=os.environ.get("CAPHUMAN_WEIGHTS"),
                   help="CapHuman diffusers folder for generation (default $CAPHUMAN_WEIGHTS; none: preview only)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="generation device")
    p.add_argument("--head", default=os.environ.get("CAPHUMAN_HEAD", "auto"),
                   help="auto | builtin | PATH (FLAME folder/.pkl or head .npz)")
    p.add_argument("--no-warmup", action="store_true", help="skip loading models at start-up")
    p.add_argument("--compile", action="store_true",
                   help="compile the UNet and CapFace (CUDA): torch.compile (slow first image, faster after); "
                        "on ZeroGPU ahead-of-time at start-up through spaces.aoti_*")
    p.add_argument("--download", action=argparse.BooleanOptionalAction, default=None,
                   help="fetch the public weights in the background at start-up when none are found "
                        "(default: on when running on Hugging Face Spaces)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from caphuman.errors import CapHumanError
    from demo.launch import launch

    try:
        launch(host=args.host, port=args.port, weights=args.weights, device=args.device, head=args.head,
               warmup=not args.no_warmup, download=args.download, compile=args.compile)
    except CapHumanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
