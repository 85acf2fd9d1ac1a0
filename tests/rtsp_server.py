"""A real RTSP camera for the tests: GStreamer's RTSP server streaming a moving test picture as MJPEG.

Run with the system Python, which has GStreamer's bindings (python3-gi, gir1.2-gst-rtsp-server-1.0):

    /usr/bin/python3 tests/rtsp_server.py PORT [--fps 10]

It serves rtsp://127.0.0.1:PORT/cam; any other path does not exist (404). SIGUSR1 freezes the
picture (the server and the session stay up, no frame is sent), SIGUSR2 unfreezes it; SIGTERM stops it.
Prints "ready" once it listens.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--fps", type=int, default=10)
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=320,height=240,framerate={args.fps}/1 "
        "! valve name=gate drop=false ! jpegenc ! rtpjpegpay name=pay0 pt=26 )"
    )
    factory.set_shared(True)
    valves = []
    frozen = [False]

    def configure(_factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        valve = media.get_element().get_by_name("gate")
        valve.set_property("drop", frozen[0])  # a client that connects during a freeze gets no frame either
        valves.append(valve)

    factory.connect("media-configure", configure)
    server.get_mount_points().add_factory("/cam", factory)
    server.attach(None)
    loop = GLib.MainLoop()

    def freeze(drop: bool) -> bool:
        frozen[0] = drop
        for valve in valves:
            valve.set_property("drop", drop)
        return GLib.SOURCE_REMOVE

    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGUSR1, lambda: freeze(True) or True)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGUSR2, lambda: freeze(False) or True)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, lambda: loop.quit() or False)
    print("ready", flush=True)
    loop.run()
    sys.exit(0)


if __name__ == "__main__":
    main()
