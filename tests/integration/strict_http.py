"""A strict reader of HTTP/1.1 requests (RFC 9112 / RFC 9110), for the differential test: what a
careful front proxy or server would take a client's bytes to mean. Written from the RFCs, sharing
nothing with loopguard, llhttp or h11 (h11 unfolds obs-fold and takes bare LF, which is what a
reference for request smuggling must not do).

read_requests(data) -> (requests, stop): every request it reads back to back from the start of
`data`, and why it stopped: None (all bytes used), ("incomplete", offset) or ("invalid", offset,
reason). A request is a dict: method, target, version, fields [(name, value)], framing ("none",
"length", "chunked"), body (bytes), trailers (chunked only), start, end.
"""
import re

TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
REQUEST_LINE = re.compile(rb"(" + TCHAR + rb"+) ([\x21-\x7e\x80-\xff]+) HTTP/([0-9])\.([0-9])\Z")
FIELD_LINE = re.compile(rb"(" + TCHAR + rb"+):[ \t]*((?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?)[ \t]*\Z")
CHUNK_LINE = re.compile(rb"(0*[0-9A-Fa-f]{1,16})((?:[ \t]*;[^\r\n\x00]*)?)\Z")  # < 2^64


class Invalid(Exception):
    def __init__(self, offset, reason):
        super().__init__(reason)
        self.offset, self.reason = offset, reason


class Incomplete(Exception):
    pass


def _line(data, pos):
    """The line starting at pos (without its CRLF) and the offset after the CRLF."""
    end = data.find(b"\n", pos)
    if end < 0:
        bad = data.find(b"\r", pos)
        if bad >= 0 and bad + 1 < len(data):
            raise Invalid(bad, "CR not followed by LF")
        raise Incomplete()
    if end == pos or data[end - 1:end] != b"\r":
        raise Invalid(end, "bare LF")
    line = data[pos:end - 1]
    cr = line.find(b"\r")
    if cr >= 0:
        raise Invalid(pos + cr, "CR not followed by LF")
    return line, end + 1


def _fields(data, pos, what):
    fields = []
    while True:
        line, nxt = _line(data, pos)
        if not line:
            return fields, nxt
        if line[:1] in (b" ", b"\t") and what == "header":
            raise Invalid(pos, f"{what}: obs-fold")
        m = FIELD_LINE.match(line)
        if m:
            fields.append((m.group(1).decode("latin-1"), m.group(2).decode("latin-1")))
        elif what == "header":
            raise Invalid(pos, f"{what}: bad field line {bytes(line)[:40]!r}")
        # A bad trailer field line ends where it should: nobody reads the message differently.
        pos = nxt


def _framing(req, start):
    te = [f for f in req["fields"] if f[0].lower() == "transfer-encoding"]
    cl = [f for f in req["fields"] if f[0].lower() == "content-length"]
    if te:
        if req["version"] == (1, 0):
            raise Invalid(start, "Transfer-Encoding in HTTP/1.0")
        if cl:
            raise Invalid(start, "Transfer-Encoding and Content-Length")
        codings = [c.strip() for v in te for c in v[1].split(",") if c.strip()]
        if [c.lower() for c in codings] != ["chunked"]:
            raise Invalid(start, f"transfer coding other than chunked: {codings!r}")
        return "chunked", None
    if cl:
        values = {v.strip() for f in cl for v in f[1].split(",") if v.strip()}
        if len(values) != 1 or not all(re.fullmatch(r"[0-9]{1,18}", v) for v in values):
            raise Invalid(start, f"bad Content-Length {[f[1] for f in cl]!r}")
        return "length", int(values.pop())
    return "none", None


def read_request(data, pos=0):
    """One request from data[pos:]: the request dict. Raises Invalid or Incomplete."""
    start = pos
    while data[pos:pos + 2] == b"\r\n" or data[pos:pos + 1] == b"\n":  # empty lines first
        pos += 2 if data[pos:pos + 1] == b"\r" else 1
    line, pos = _line(data, pos)
    m = REQUEST_LINE.match(line)
    if not m:
        raise Invalid(pos, f"bad request line {bytes(line)[:60]!r}")
    req = {"method": m.group(1).decode(), "target": m.group(2).decode("latin-1"),
           "version": (int(m.group(3)), int(m.group(4))), "start": start}
    req["fields"], pos = _fields(data, pos, "header")
    req["framing"], length = _framing(req, pos)
    if req["framing"] == "length":
        if len(data) - pos < length:
            raise Incomplete()
        req["body"], pos = bytes(data[pos:pos + length]), pos + length
    elif req["framing"] == "chunked":
        body = bytearray()
        while True:
            line, nxt = _line(data, pos)
            m = CHUNK_LINE.match(line)
            if not m:
                raise Invalid(pos, f"bad chunk line {bytes(line)[:40]!r}")
            size, pos = int(m.group(1), 16), nxt
            if size == 0:
                req["trailers"], pos = _fields(data, pos, "trailer")
                break
            if len(data) - pos < size + 2:
                raise Incomplete()
            body += data[pos:pos + size]
            if data[pos + size:pos + size + 2] != b"\r\n":
                raise Invalid(pos + size, "chunk data not followed by CRLF")
            pos += size + 2
        req["body"] = bytes(body)
    else:
        req["body"] = b""
    req["end"] = pos
    return req


def read_requests(data):
    requests, pos = [], 0
    while pos < len(data):
        try:
            req = read_request(data, pos)
        except Incomplete:
            return requests, ("incomplete", pos)
        except Invalid as e:
            return requests, ("invalid", pos, e.reason)
        requests.append(req)
        pos = req["end"]
    return requests, None
