"""`jvideo studio`: start the local web editor and print its address."""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from montage.errors import MontageError
from montage.montage_cli import size_arg


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "studio", help="local web editor: edit the script, the film re-cuts itself",
        description="Start the studio, a web app on this machine: the script on the left, the "
                    "storyboard and the current cut on the right. Editing the text re-plans only "
                    "what changed and re-renders the film in the background; pin shots, ban "
                    "shots, set the idioms, search and index footage, export MP4/SRT/OTIO/EDL/plan. "
                    "The session is saved to the project file.")
    p.add_argument("--library", type=Path, default=None,
                   help="footage library folder (jvideo index); default: the project's")
    p.add_argument("--project", type=Path, default=None,
                   help="project file to open or create (default ./studio-project.json); renders "
                        "and exports go to the folder beside it named PROJECT.studio/")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--size", type=size_arg, default=None, help="film size WxH (default: the aspect's)")
    p.set_defaults(func=run)


def _stop(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from .server import serve
    from .session import default_project

    if not 0 <= args.port <= 65535:
        raise MontageError(f"--port must be 0..65535, not {args.port}")
    if args.size is not None:   # refused here, in one line, rather than by the first render
        from kernels.resources import check_memory
        from montage.render import RenderConfig
        rcfg = RenderConfig(width=args.size[0], height=args.size[1])
        check_memory(rcfg.memory_estimate(), f"rendering a {rcfg.width}x{rcfg.height} film")
    if args.library is not None and not Path(args.library).expanduser().is_dir():
        raise MontageError(f"library {args.library} does not exist (create it with "
                           f"'jvideo index FOLDER --library {args.library}')")
    project = args.project or default_project()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"jvideo studio: warning: serving on {args.host}: other machines can reach the studio "
              "and read its library's thumbnails and the project's films", file=sys.stderr)
    # `kill` stops like Ctrl-C: the project is saved. The handler is put back on the way out, so
    # a caller that stays alive (the tests call cli.main in-process) and the processes it forks
    # later do not inherit it.
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        return serve(project=project, library=args.library, host=args.host, port=args.port,
                     size=args.size, announce=lambda url: print(f"studio: {url}  (project "
                                                               f"{Path(project).absolute()}; Ctrl-C to stop)",
                                                               flush=True))
    finally:
        signal.signal(signal.SIGTERM, previous)
