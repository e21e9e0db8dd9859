"""The session wire protocol, without a container."""

import struct

from sandbox.docker.streams import Demux
from sandbox.framing import decode_output, frame, parse_export_dump, parse_trailer


def test_trailer_parsed_only_when_complete():
    nonce = "SEKabc"
    body = b"out\nmore" + b"\n" + b"SEKabc 3 42 7\n/home/user/my dir\nSEKabc\nexport A='1'\nSEKabcE\n"
    for cut in range(len(body) - 1):
        assert parse_trailer(body[:cut], nonce) is None or cut >= len(body) - 1
    t = parse_trailer(body, nonce)
    assert (t.output, t.status, t.pid, t.npids, t.cwd) == (b"out\nmore", 3, 42, 7, "/home/user/my dir")
    assert parse_export_dump(t.env_dump) == {"A": "1"}


def test_export_dump_with_dash_quoting():
    dump = "export HOME='/home/user'\nexport Q='it'\"'\"'s'\nexport ML='a\nb'\nexport EMPTY=''\nexport NOVALUE\n"
    assert parse_export_dump(dump) == {"HOME": "/home/user", "Q": "it's", "ML": "a\nb", "EMPTY": ""}


def test_command_is_a_quoted_heredoc_never_expanded():
    data = frame("echo $HOME `id` 'x'", "SEKn1").decode()
    assert "3<<'SEKn1'" in data and "\necho $HOME `id` 'x'\nSEKn1\n" in data


def test_demux_keeps_stdout_frames_only():
    def fr(kind, payload):
        return bytes([kind, 0, 0, 0]) + struct.pack(">I", len(payload)) + payload
    stream = fr(1, b"hello ") + fr(2, b"shell noise") + fr(1, b"world")
    d = Demux()
    out = b"".join(d.feed(stream[i:i + 3]) for i in range(0, len(stream), 3))
    assert out == b"hello world"


def test_decode_is_safe_and_hides_the_framing():
    assert decode_output(b"/bin/sh: 1: /dev/fd/3: foo: not found\n\xff\x00") == "sh: 1: foo: not found\n\ufffd\\0"
