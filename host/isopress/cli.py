"""The ``isopress`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DemoError, DemoOptions, load_recipe_file, run_demo

    try:
        recipe = load_recipe_file(Path(args.recipe)) if args.recipe else None
    except DemoError as exc:
        print(f"isopress demo: {exc}", file=sys.stderr)
        return 2
    options = DemoOptions(
        workdir=Path(args.workdir),
        recipe=recipe,
        broker=args.broker,
        press_id=args.press_id,
        keep_running=args.keep_running,
        progress=args.progress,
    )
    return run_demo(options)


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


def _cmd_config_check(args: argparse.Namespace) -> int:
    from .agent.config import ConfigError, load_config

    try:
        config = load_config(Path(args.file))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    broker = f"{config.broker.host}:{config.broker.port}"
    print(f"{args.file}: valid (press {config.agent.press_id}, broker {broker})")
    return 0


def _cmd_agent(args: argparse.Namespace) -> int:
    from .agent.main import run_agent

    config = Path(args.config)
    return run_agent(config, port=args.port, fake_board=args.fake_board, fake_speed=args.fake_speed)


def _cmd_virtual_board(args: argparse.Namespace) -> int:
    from .virtual_board_cli import run_virtual_board

    config = Path(args.config).read_text() if args.config else None
    return run_virtual_board(args.runtime, args.seed, config)


def _cmd_fleet(args: argparse.Namespace) -> int:
    import json

    from .fleet import FleetError, FleetSpec, format_report, run_fleet
    from .rig import StationError

    spec = FleetSpec(
        presses=args.presses,
        rate_hz=args.rate,
        duration_s=args.duration,
        warmup_s=args.warmup,
        broker=args.broker,
        workdir=Path(args.workdir) if args.workdir else None,
    )
    try:
        spec.check()
    except FleetError as exc:
        print(f"isopress fleet: {exc}", file=sys.stderr)
        return 2
    if not args.json:
        print(
            f"isopress fleet: starting {spec.presses} virtual board(s) and agent(s) at {spec.rate_hz:g} Hz; "
            f"warm-up {spec.warmup_s:g} s, window {spec.duration_s:g} s ...",
            file=sys.stderr,
            flush=True,
        )
    try:
        report = run_fleet(spec)
    except (StationError, TimeoutError) as exc:
        print(f"isopress fleet: {exc or 'timed out waiting for the presses'}", file=sys.stderr)
        return 1
    print(json.dumps(report.as_dict(), indent=2) if args.json else format_report(report))
    return 0 if report.zero_loss else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="isopress", description="Laboratory isostatic press: host tools")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="the whole stack on this machine: virtual board, agent, broker, a recipe run over MQTT",
    )
    demo.add_argument("--workdir", default="build/demo", help="run records, logs, spool (default build/demo)")
    demo.add_argument("--recipe", help="a recipe JSON file instead of the built-in 60 s one")
    demo.add_argument(
        "--broker",
        choices=["auto", "mosquitto", "embedded"],
        default="auto",
        help="auto: Mosquitto when installed, else the embedded broker",
    )
    demo.add_argument("--press-id", default="demo", help="the press id in the MQTT topics (default demo)")
    demo.add_argument(
        "--keep-running", action="store_true", help="after the run, keep everything up until Ctrl-C"
    )
    demo.add_argument(
        "--progress",
        choices=["auto", "line", "log"],
        default="auto",
        help="one live line (a terminal) or a line a second (auto: by whether stdout is a terminal)",
    )
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

    config = sub.add_parser("config", help="agent configuration files")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser(
        "check", help="validate an agent config file (exit 0 valid, 2 with every problem)"
    )
    check.add_argument("file", help="the TOML file, e.g. /etc/isopress/agent.toml")
    check.set_defaults(func=_cmd_config_check)

    agent = sub.add_parser("agent", help="run the host agent (MQTT, spool, commands, run records)")
    agent.add_argument("--config", required=True, help="agent TOML file (see deploy/agent.example.toml)")
    agent.add_argument("--port", help="serial port URL (overrides serial.port)")
    agent.add_argument("--fake-board", action="store_true", help="TESTING ONLY: a fake press, not the board")
    agent.add_argument("--fake-speed", type=float, default=1.0, help="fake board time per wall second")
    agent.set_defaults(func=_cmd_agent)

    vboard = sub.add_parser("virtual-board", help="the virtual board in real time on a pseudo-terminal")
    vboard.add_argument("--runtime", choices=["micropython", "cpython"], default="micropython")
    vboard.add_argument("--seed", type=int, default=1, help="the plant's and transducer's random seed")
    vboard.add_argument("--config", help="the board's config.json (sealed; default the sim's)")
    vboard.set_defaults(func=_cmd_virtual_board)

    fleet = sub.add_parser(
        "fleet",
        help="N virtual boards and agents on one broker: loss, latency, CPU and memory",
        description="Start N virtual boards (real time) and N agents against one broker, press a recipe "
        "on each, subscribe to all telemetry and report per press and overall. Exit 0 with zero loss, "
        "1 otherwise, 2 for bad arguments.",
    )
    fleet.add_argument("--presses", type=int, required=True, metavar="N", help="number of presses (1-64)")
    fleet.add_argument(
        "--rate", type=float, required=True, metavar="HZ", help="telemetry rate per press: 100/k or 200/k Hz"
    )
    fleet.add_argument("--duration", type=float, default=10.0, metavar="S", help="measured window (10 s)")
    fleet.add_argument("--warmup", type=float, default=3.0, metavar="S", help="after the recipes start (3 s)")
    fleet.add_argument("--broker", choices=["auto", "mosquitto", "embedded"], default="auto")
    fleet.add_argument("--workdir", help="keep configs, spools and logs here (default: a temp dir)")
    fleet.add_argument("--json", action="store_true", help="the report as JSON")
    fleet.set_defaults(func=_cmd_fleet)

    from .runs.cli import add_runs_parser

    add_runs_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
