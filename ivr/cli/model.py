"""``ivr model download|path|check``: install, locate and inspect the Vosk speech model."""

from __future__ import annotations

import sys


def register(sub):
    parser = sub.add_parser("model", help="download, locate or check the Vosk speech model")
    msub = parser.add_subparsers(dest="model_command", metavar="ACTION")

    p = msub.add_parser("download", help="download and install a Vietnamese Vosk model")
    p.add_argument("size", nargs="?", default="small", choices=["small", "full"],
                   help="small: vosk-model-small-vn-0.4 (~32 MB, default); full: vosk-model-vn-0.4 (~78 MB)")
    p.add_argument("--dir", help="install into DIR/<name>/ instead of the repository's models/")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_download)

    p = msub.add_parser("path", help="print the model directory that would be used")
    p.add_argument("--model", help="model directory (overrides IVR_VOSK_MODEL and models/)")
    p.set_defaults(func=_path)

    p = msub.add_parser("check", help="load the model and describe it")
    p.add_argument("--model", help="model directory (overrides IVR_VOSK_MODEL and models/)")
    p.set_defaults(func=_check)

    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _download(args) -> int:
    from ivr.media import models

    spec = models.known_models()[args.size]
    print(f"downloading {spec['name']} (~{spec.get('size_mb', '?')} MB) from {models.model_url(spec['name'])}",
          file=sys.stderr)
    path = models.download_model(args.size, args.dir, progress=not args.quiet)
    print(path)
    return 0


def _path(args) -> int:
    from ivr.media import asr

    print(asr.resolve_model_path(args.model))
    return 0


def _check(args) -> int:
    from ivr.media import asr, models

    info = models.check_model(asr.resolve_model_path(args.model))
    print(f"model:        {info['name']}")
    print(f"path:         {info['path']}")
    print(f"sample rate:  {info['sample_rate']} Hz")
    print(f"size:         {info['size_mb']} MB")
    print(f"load time:    {info['load_seconds']} s")
    print(f"vietnamese:   {'yes' if info['vietnamese'] else 'no (the IVR expects a Vietnamese model)'}")
    print(f"phrase lists: {'supported' if info['grammar'] else 'not supported (static graph)'}")
    if info.get("sha256"):
        print(f"sha256:       {info['sha256']}")
    return 0
