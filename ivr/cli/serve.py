"""``ivr serve``: the phone hotline (SIP/RTP user agent server and Asterisk AudioSocket listener)."""

from __future__ import annotations

import argparse
import math
import sys

from ivr.cli.options import number as number_type
from ivr.errors import IvrError


def register(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="answer phone calls: SIP/RTP (G.711, RFC 4733 keys) and Asterisk AudioSocket",
        description="Answer calls on SIP (UDP) and Asterisk AudioSocket (TCP). Every call runs its own call "
        "session; call logs go to --log-dir. SIGTERM/Ctrl-C: new calls are refused, calls in progress "
        "may finish, then they are told goodbye and hung up. Defaults come from config/sip.yaml.",
    )
    p.add_argument("--sip", metavar="HOST:PORT", help="SIP UDP address (default 127.0.0.1:5060; 'off' to disable)")
    p.add_argument("--audiosocket", metavar="HOST:PORT",
                   help="AudioSocket TCP address (default 127.0.0.1:9092; 'off' to disable)")
    p.add_argument("--max-calls", type=number_type(1, 10000, kind=int, unit="calls", example="--max-calls 50"),
                   metavar="N", help="calls at once (default 50)")
    p.add_argument("--log-dir", metavar="DIR", help="one JSON-lines log per call (default: logs/ or $IVR_LOG_DIR)")
    p.add_argument("--model", metavar="PATH", help="Vosk model directory, or 'none' for keypad only")
    p.add_argument("--operator-uri", metavar="SIP_URI", help="transfer target for 'operator' (SIP REFER)")
    p.add_argument("--rtp-ports", metavar="LOW-HIGH", help="UDP port range for RTP (default 20000-20999)")
    p.add_argument("--allow", nargs="+", metavar="CIDR", action="extend",
                   help="source addresses/networks allowed besides loopback (needed to serve a wider bind)")
    p.add_argument("--grace", type=number_type(0, 86400, unit="seconds", example="--grace 30"), metavar="SECONDS",
                   help="time calls get to finish on shutdown (0-86400)")
    p.add_argument("--http", metavar="[HOST:]PORT", help="serve /metrics (Prometheus), /healthz and /report here "
                   "(off by default; HOST defaults to 127.0.0.1)")
    p.set_defaults(func=run)


def hostport(text: str, what: str, example_port: int | None = None) -> tuple[str, int] | None:
    if text is None or str(text).lower() in ("off", "none", "no", "false"):
        return None
    text = str(text).strip()
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        example = example_port or (5060 if "sip" in what else 9092)
        raise IvrError(f"{what} {text!r} is not HOST:PORT", f"write it like 127.0.0.1:{example}")
    return host, int(port)


def port_range(text: str, what: str = "--rtp-ports") -> tuple[int, int]:
    low, _, high = str(text).partition("-")
    if not (low.isdigit() and high.isdigit()) or not 1024 <= int(low) < int(high) <= 65535 or int(high) - int(low) < 1:
        raise IvrError(f"{what} {text!r} is not a range LOW-HIGH of UDP ports",
                       "write it like 20000-20999 (ports 1024-65535)")
    return int(low), int(high)


def rtp_calls(low: int, high: int) -> int:
    """Calls a port range can carry: one even port per call (its odd neighbour is RTCP's)."""
    return len(range(low + (low & 1), high + 1, 2))


def is_loopback(host: str) -> bool:
    """True when ``host`` (an address or a name such as localhost) means only this machine."""
    import ipaddress
    import socket

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_UDP)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def options_from(args: argparse.Namespace):
    from ivr.content import config
    from ivr.phone.admission import AllowList
    from ivr.phone.server import ServeOptions

    conf = config.load("sip")
    conf_path = config.path("sip")

    def pick(cli, key, default):
        return cli if cli is not None else conf.get(key, default)

    def source(cli, key, option):
        """Who gave a value: the option, or the settings file (with its line)."""
        return option if cli is not None else f"{config.at(conf_path, conf, key)}: {key}"

    def number(cli, key, default, kind=float, low=0.0, high=86400.0):
        value = pick(cli, key, default)
        where = source(cli, key, f"--{key.replace('_seconds', '').replace('_', '-')}")
        try:
            if isinstance(value, bool):
                raise ValueError
            out = kind(value)
        except (TypeError, ValueError, OverflowError):
            raise IvrError(f"{where} = {value!r} is not a number",
                           f"write a number, e.g. {key}: {default}") from None
        if not math.isfinite(out) or not low <= out <= high:
            raise IvrError(f"{where} = {value!r} is outside {low:g}..{high:g}",
                           f"write a number in that range, e.g. {key}: {default}")
        return out

    allow = conf.get("allow") or []
    if not isinstance(allow, list):
        raise IvrError(f"{config.at(conf_path, conf, 'allow')}: allow = {allow!r} is not a list",
                       "write it like [10.0.0.0/24]")
    media_networks = conf.get("media_networks") or []
    if not isinstance(media_networks, list):
        raise IvrError(f"{config.at(conf_path, conf, 'media_networks')}: media_networks = {media_networks!r} "
                       "is not a list", "write it like [10.0.0.0/24]")
    opts = ServeOptions(
        sip=hostport(pick(args.sip, "sip", "127.0.0.1:5060"), source(args.sip, "sip", "--sip"), 5060),
        audiosocket=hostport(pick(args.audiosocket, "audiosocket", "127.0.0.1:9092"),
                             source(args.audiosocket, "audiosocket", "--audiosocket"), 9092),
        max_calls=number(args.max_calls, "max_calls", 50, int, 1, 10000),
        max_pending=number(None, "max_pending", 40, int, 1, 100000),
        max_pending_per_source=number(None, "max_pending_per_source", 20, int, 1, 100000),
        uuid_timeout=number(None, "uuid_timeout_seconds", 3.0, low=0.1, high=600),
        media_networks=[str(n) for n in media_networks],
        rtp_ports=port_range(pick(args.rtp_ports, "rtp_ports", "20000-20999"),
                             source(args.rtp_ports, "rtp_ports", "--rtp-ports")),
        allow=[str(a) for a in allow] + list(args.allow or []),
        operator_uri=pick(args.operator_uri, "operator_uri", None),
        ring=number(None, "ring_seconds", 0.3, high=60),
        grace=number(args.grace, "grace_seconds", 30),
        goodbye=number(None, "goodbye_seconds", 10, high=600),
        t1=number(None, "t1_seconds", 0.5, low=0.01, high=60),
        t2=number(None, "t2_seconds", 4.0, low=0.01, high=600),
        media_timeout=number(None, "media_timeout_seconds", 60, low=1),
        public_ip=conf.get("public_ip"),
        max_decode_lag=number(None, "max_decode_lag_seconds", 1.0, low=0.05, high=600),
        when_busy=str(conf.get("when_busy", "keys")),
    )
    if opts.when_busy not in ("keys", "refuse"):
        raise IvrError(f"{config.at(conf_path, conf, 'when_busy')}: when_busy = {opts.when_busy!r} is not "
                       "keys or refuse", "write when_busy: keys (answer keypad-first) or when_busy: refuse (503)")
    ports = rtp_calls(*opts.rtp_ports)
    if ports < opts.max_calls:
        where = source(args.rtp_ports, "rtp_ports", "--rtp-ports")
        raise IvrError(f"{where} {opts.rtp_ports[0]}-{opts.rtp_ports[1]} has {ports} even port(s), one per call, "
                       f"but {opts.max_calls} calls at once are allowed",
                       f"widen the range to at least {2 * opts.max_calls} ports (e.g. 20000-20999), or lower "
                       f"--max-calls to {max(ports, 1)}")
    if opts.max_calls < 1:
        raise IvrError(f"--max-calls {opts.max_calls}: must be at least 1", "give a positive number of calls")
    if opts.sip is None and opts.audiosocket is None:
        raise IvrError("both --sip and --audiosocket are off: nothing to serve", "enable at least one listener")
    if opts.operator_uri and not str(opts.operator_uri).startswith(("sip:", "sips:")):
        raise IvrError(f"--operator-uri {opts.operator_uri!r} is not a SIP URI", "write it like sip:operator@10.0.0.5")
    AllowList.parse(opts.media_networks, loopback=False, what=f"{config.at(conf_path, conf, 'media_networks')}: media_networks")
    allow = AllowList.parse(opts.allow)
    for name, addr in (("--sip", opts.sip), ("--audiosocket", opts.audiosocket)):
        if addr and not is_loopback(addr[0]) and not allow.allows(addr[0]) and not opts.allow:
            raise IvrError(f"{name} binds {addr[0]}, which is not loopback, but no --allow list is given",
                           "add --allow with the PBX address or network (e.g. --allow 10.0.0.0/24)")
    return opts


def http_options(args: argparse.Namespace):
    """``--http``: None (off), or ((host, port), allows) where ``allows`` is the --allow list's check."""
    if not getattr(args, "http", None):
        return None
    from ivr.phone.admission import AllowList

    text = str(args.http).strip()
    addr = ("127.0.0.1", int(text)) if text.isdigit() and int(text) <= 65535 else hostport(text, "--http")
    allow = AllowList.parse(args.allow)
    if not allow.allows(addr[0]) and not args.allow:
        raise IvrError(f"--http binds {addr[0]}, which is not loopback, but no --allow list is given",
                       "add --allow with the monitoring host or network, or bind 127.0.0.1")
    return addr, allow.allows


def session_factory(args: argparse.Namespace, metrics=None):
    """One shared set of resources (FAQ, matcher, prompts, TTS cache, speech model); a CallSession per call."""
    from pathlib import Path

    try:
        from ivr.channels.session import CallSession, Resources
    except ImportError as exc:
        raise IvrError(f"the call engine is not available ({exc})", "reinstall the package: pip install -e .") from None
    from ivr.channels.calllog import default_log_dir
    from ivr.phone.metrics import watch

    log_dir = Path(args.log_dir) if args.log_dir else default_log_dir()  # every call is logged
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IvrError(f"log directory {log_dir}: cannot create it ({exc.strerror})",
                       "give a writable directory with --log-dir (or IVR_LOG_DIR)") from None
    model = args.model if args.model is not None else None
    resources = Resources.load(model_path=model, tts_rate=8000)
    if resources.speech_note:
        print(f"ivr serve: {resources.speech_note}", file=sys.stderr)
    counts = resources.warm()  # every prompt and answer rendered now: no call waits for the speech engine
    print(f"ivr serve: {counts.get('texts', 0)} prompts and answers ready "
          f"({counts.get('rendered', 0)} rendered now)", file=sys.stderr)
    if resources.model is not None:
        import threading

        def warm_speech() -> None:
            # the first callers' turns are decoded by recognisers that have already decoded the line's prompts;
            # calls arriving meanwhile run first
            from ivr.phone.worker import lower_priority

            lower_priority()
            try:
                done = resources.warm_speech(8000)
            except Exception as exc:  # noqa: BLE001 - the line works cold; say why it is not warm
                print(f"ivr serve: speech recognisers not warmed up ({exc})", file=sys.stderr)
                return
            if done["recognisers"]:
                busy = f", and {done['busy']} with the busy line's narrower search" if done.get("busy") else ""
                print(f"ivr serve: {done['recognisers']} speech recognisers warm{busy} "
                      f"({done['seconds']:.0f} s of prompts each, {done['wall_s']:.1f} s)", file=sys.stderr)

        threading.Thread(target=warm_speech, name="asr-warm-up", daemon=True).start()

    def factory(call_id: str, channel: str, speech: bool = True):
        # decoding is deferred: the worker runs keys and the IVR's frames first, speech decoding behind them
        session = CallSession(resources, call_id=call_id, sample_rate=8000, log_dir=log_dir, channel=channel,
                              defer_decode=True, speech=speech)
        return watch(session, metrics)  # ivr.phone.metrics: counters from the call's log events

    return factory


def run(args: argparse.Namespace) -> int:
    import logging

    from ivr.phone.server import run as serve_run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    opts = options_from(args)
    http = http_options(args)
    metrics = health = web = None
    if http:
        from ivr.phone.metrics import Health, Metrics

        metrics, health = Metrics(), Health()
    factory = session_factory(args, metrics)
    if http:
        from pathlib import Path

        from ivr.channels.calllog import default_log_dir
        from ivr.phone.metrics import start

        try:
            web = start(http[0], metrics, log_dir=Path(args.log_dir) if args.log_dir else default_log_dir(),
                        health=health, allows=http[1])
        except OSError as exc:
            raise IvrError(f"--http {args.http}: cannot listen ({exc.strerror or exc})", "choose a free port") from None

    def ready(addresses: dict[str, str]) -> None:
        if web is not None:
            addresses = {**addresses, "http": web.address}
        for name, addr in addresses.items():
            print(f"listening {name} {addr}", flush=True)

    try:
        return serve_run(opts, factory, ready, health=health)
    except OSError as exc:
        raise IvrError(f"cannot listen: {exc}", "choose a free address/port (--sip, --audiosocket)") from None
    finally:
        if web is not None:
            web.close()
