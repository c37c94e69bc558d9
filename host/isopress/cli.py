"""The ``isopress`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo()


def _cmd_firmware_build(args: argparse.Namespace) -> int:
    from .firmware_build import BuildError, ConfigError, build_bundle

    out = Path(args.out) if args.out else Path("build") / f"firmware-{args.board}"
    try:
        files = build_bundle(args.board, out)
    except (BuildError, ConfigError) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"built {len(files)} files for {args.board} in {out}")
    return 0


def _cmd_firmware_deploy(args: argparse.Namespace) -> int:
    from .firmware_build import BuildError, ConfigError, build_bundle
    from .firmware_deploy import DeployError, deploy, deploy_command

    bundle = Path(args.bundle) if args.bundle else Path("build") / f"firmware-{args.board}"
    try:
        if not args.bundle:
            build_bundle(args.board, bundle)
        if args.dry_run:
            print(" ".join(deploy_command(bundle, args.port)))
            return 0
        deploy(bundle, args.port)
    except (BuildError, ConfigError, DeployError) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"deployed {bundle} to {args.port}")
    return 0


def _cmd_firmware_seal_config(args: argparse.Namespace) -> int:
    from .firmware_build import check_config, seal_config

    status = 0
    for name in args.files:
        path = Path(name)
        try:
            checksum = seal_config(path)
        except (OSError, ValueError) as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{path}: {checksum}")
        if args.board:
            for problem in check_config(path, args.board):
                print(f"{path}: {problem}", file=sys.stderr)
                status = 1
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="isopress", description="Laboratory isostatic press: host tools")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run a press cycle on the virtual board and print the trace")
    demo.set_defaults(func=_cmd_demo)

    firmware = sub.add_parser("firmware", help="build and deploy board firmware")
    fw_sub = firmware.add_subparsers(dest="firmware_command", required=True)
    build = fw_sub.add_parser("build", help="compile the firmware bundle for a board")
    build.add_argument("--board", choices=["rp2", "esp32", "sim"], required=True)
    build.add_argument("--out", help="output folder (default build/firmware-BOARD)")
    build.set_defaults(func=_cmd_firmware_build)
    deploy = fw_sub.add_parser("deploy", help="copy a firmware bundle onto a board with mpremote")
    deploy.add_argument("--port", required=True, help="the board's serial port, e.g. /dev/ttyACM0")
    deploy.add_argument("--board", choices=["rp2", "esp32"], default="rp2")
    deploy.add_argument("--bundle", help="deploy this built bundle instead of building one")
    deploy.add_argument("--dry-run", action="store_true", help="print the mpremote command, copy nothing")
    deploy.set_defaults(func=_cmd_firmware_deploy)
    seal = fw_sub.add_parser("seal-config", help="(re)write the checksum of board config files")
    seal.add_argument("files", nargs="+", help="config.json files")
    seal.add_argument("--board", choices=["rp2", "esp32", "sim"], help="also check the config for this board")
    seal.set_defaults(func=_cmd_firmware_seal_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
