"""Seeded generator of raw client requests for test_differential.py: ordinary requests, the
request smuggling classics and random byte edits. The same seed gives the same cases.

Every request carries `X-Request-Id: dc-<case>-<n>` as its first header field; no mutation
touches that line, so whatever reaches the upstream can be traced to the request it came from.
A case can also hide a request inside another's body (id dc-<case>-h<n>): the client never sent
it as a request of its own, so it must never reach the upstream as one.
"""
import random
from dataclasses import dataclass, field


@dataclass
class Case:
    name: str
    kind: str  # the mutations applied, for failure messages and the summary
    data: bytes
    ids: list = field(default_factory=list)


@dataclass
class Request:
    id: str
    method: bytes
    target: bytes
    version: bytes = b"HTTP/1.1"
    fields: list = field(default_factory=list)  # [(name, value)] after the id, as bytes
    body: bytes = b""                           # already framed per the fields
    sp1: bytes = b" "
    sp2: bytes = b" "
    eol: bytes = b"\r\n"

    def render(self):
        """(bytes, (start, end) of the X-Request-Id line)."""
        line = self.method + self.sp1 + self.target + self.sp2 + self.version + self.eol
        id_line = b"X-Request-Id: " + self.id.encode() + b"\r\n"
        rest = b"".join(n + b":" + (b" " if v and v[:1] not in b" \t" else b"") + v + b"\r\n"
                        for n, v in self.fields)
        return line + id_line + rest + b"\r\n" + self.body, (len(line), len(line) + len(id_line))


TE_NAMES = [b"Transfer-Encoding", b"transfer-encoding", b"Transfer-Encoding ", b"Transfer_Encoding",
            b"Transfer-Encoding\x0b", b"X-Transfer-Encoding", b"Transfer-Encodin", b"TRANSFER-ENCODING"]
TE_VALUES = [b"chunked", b"Chunked", b" chunked", b"chunked ", b"\tchunked", b"xchunked", b"chunk",
             b"chunked, identity", b"identity, chunked", b"gzip, chunked", b"chunked, chunked",
             b"", b"chunked;q=1", b"\"chunked\"", b"chunked\x00", b"identity", b",chunked", b"chunked,"]
CL_VALUES = [b"5", b"05", b"+5", b"-5", b" 5", b"5 ", b"0x5", b"5.0", b"5, 5", b"5, 6", b"", b"5a",
             b"99999999999999999999", b"0", b"4", b"6"]
CHUNK_LINES = [b"0x5", b" 5", b"5 ", b"-5", b"5;", b"5;a", b"5;a=\"x\"", b"5 ;a=b", b"5\t;a",
               b"fffffffffffffffffff5", b"5;a\nb", b"5\r", b"05", b"5;\x00"]
INTERESTING = b"\r\n \t:;,\x00\x0b\x0c\x7f\x80\xff\"\\/0A"


def _chunked(pieces, trailers=b""):
    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p)
    return out + b"0\r\n" + trailers + b"\r\n"


class Generator:
    def __init__(self, seed):
        self.rng = random.Random(seed)

    def base(self, rid, body_kind=None):
        r = self.rng
        prefix = b"/buffered" if r.random() < 0.25 else b""
        method = r.choice([b"GET", b"GET", b"POST", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"])
        target = prefix + r.choice([b"/", b"/items", b"/items/1?x=1&y=%20", b"/a/b/c", b"/echo",
                                    b"/api/v1/x;p=1"])
        fields = [(b"Host", r.choice([b"test.local", b"example.com:8080", b"a"]))]
        for name, values in ((b"User-Agent", [b"curl/7.88.1", b"python"]),
                             (b"Accept", [b"*/*", b"application/json"]),
                             (b"X-Custom", [b"1", b"a b c", b"x=\"y\""]),
                             (b"Cookie", [b"a=1; b=2"]),
                             (b"Connection", [b"keep-alive", b"X-Custom", b"close"])):
            if r.random() < 0.3:
                fields.append((name, r.choice(values)))
        req = Request(rid, method, target, fields=fields)
        kind = body_kind or r.choice(["none", "none", "length", "chunked"])
        payload = bytes(r.choice(b"abcdefgh") for _ in range(r.choice([1, 5, 16, 100])))
        if kind == "length":
            req.fields.append((b"Content-Length", str(len(payload)).encode()))
            req.body = payload
        elif kind == "chunked":
            req.fields.append((b"Transfer-Encoding", b"chunked"))
            cut = r.randrange(1, len(payload) + 1)
            trailers = b"X-Trailer: t\r\n" if r.random() < 0.2 else b""
            req.body = _chunked([payload[:cut], payload[cut:]], trailers)
        return req

    # ---- mutations of a request (in place) ----
    def m_te(self, req):
        r = self.rng
        req.fields = [f for f in req.fields if f[0].lower() not in (b"transfer-encoding",)]
        for _ in range(r.choice([1, 1, 2])):
            req.fields.insert(r.randrange(len(req.fields) + 1), (r.choice(TE_NAMES), r.choice(TE_VALUES)))
        if not req.body:
            req.body = _chunked([b"hello"])
        return "te"

    def m_cl(self, req):
        r = self.rng
        req.fields = [f for f in req.fields if f[0].lower() != b"content-length"]
        for _ in range(r.choice([1, 2])):
            req.fields.append((r.choice([b"Content-Length", b"content-length", b"Content-Length "]),
                               r.choice(CL_VALUES)))
        if not req.body or req.body.startswith(b"0\r\n") or b"\r\n0\r\n" in req.body:
            req.body = b"hello"
        return "cl"

    def m_cl_te(self, req):
        r = self.rng
        req.fields = [f for f in req.fields if f[0].lower() not in (b"transfer-encoding", b"content-length")]
        te = (r.choice(TE_NAMES[:3]), r.choice(TE_VALUES[:6]))
        cl = (b"Content-Length", r.choice([b"4", b"5", b"6", b"15", b"0"]))
        req.fields += [te, cl] if r.random() < 0.5 else [cl, te]
        req.body = r.choice([_chunked([b"hello"]), b"5\r\nhello\r\n0\r\n\r\nGET /x HTTP/1.1\r\n\r\n",
                             b"0\r\n\r\nG", b"hello"])
        return "cl.te"

    def m_fold(self, req):
        r = self.rng
        i = r.randrange(len(req.fields))
        name, value = req.fields[i]
        fold = r.choice([b"\r\n ", b"\r\n\t", b"\r\n  "])
        if r.random() < 0.5:
            req.fields[i] = (name, fold + (value or b"x"))  # empty first line
        else:
            cut = r.randrange(len(value) + 1)
            req.fields[i] = (name, value[:cut] + fold + value[cut:] + b"x")
        return "obs-fold"

    def m_space_colon(self, req):
        i = self.rng.randrange(len(req.fields))
        name, value = req.fields[i]
        req.fields[i] = (name + self.rng.choice([b" ", b"\t", b"  "]), value)
        return "space-colon"

    def m_chunk_line(self, req):
        r = self.rng
        req.fields = [f for f in req.fields if f[0].lower() not in (b"transfer-encoding", b"content-length")]
        req.fields.append((b"Transfer-Encoding", b"chunked"))
        size_line = r.choice(CHUNK_LINES)
        data_end = r.choice([b"\r\n", b"\n", b"", b"XX", b"\r"])
        req.body = size_line + b"\r\nhello" + data_end + b"0\r\n\r\n"
        return "chunk-line"

    def m_request_line(self, req):
        r = self.rng
        choice = r.randrange(6)
        if choice == 0:
            req.sp1 = r.choice([b"  ", b"\t", b" \t"])
        elif choice == 1:
            req.sp2 = r.choice([b"  ", b"\t"])
        elif choice == 2:
            req.version = r.choice([b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"http/1.1", b"HTTP/1.1 ", b"HTTP/11"])
        elif choice == 3:
            req.eol = r.choice([b"\n", b"\r", b"\r\r\n"])
        elif choice == 4:
            req.target = r.choice([b"*", b"http://other.test/x", b"//a", b"/a\tb", b"/a\x0cb", b"/caf\xc3\xa9",
                                   b"/%2e%2e/x", b"/a#frag"])
        else:
            req.method = r.choice([b"get", b"G ET", b"CONNECT", b"PRI", b"X" * 30])
        return "request-line"

    def m_host(self, req):
        r = self.rng
        hosts = [f for f in req.fields if f[0] == b"Host"]
        others = [f for f in req.fields if f[0] != b"Host"]
        choice = r.randrange(3)
        if choice == 0:
            req.fields = others
        elif choice == 1:
            req.fields = hosts + [(b"Host", b"evil.test")] + others
        else:
            req.fields = [(b"Host", r.choice([b"", b"a b", b"evil.test/path", b"a\x01b"]))] + others
        return "host"

    def m_ctl(self, req):
        i = self.rng.randrange(len(req.fields))
        name, value = req.fields[i]
        cut = self.rng.randrange(len(value) + 1)
        req.fields[i] = (name, value[:cut] + bytes([self.rng.choice(b"\x00\x01\x0b\x0c\x7f\r\n")]) + value[cut:])
        return "ctl"

    FIELD_MUTATIONS = ["m_te", "m_cl", "m_cl_te", "m_fold", "m_space_colon", "m_chunk_line",
                       "m_request_line", "m_host", "m_ctl"]

    # ---- byte-level edits of a rendered case, outside the protected id lines ----
    def byte_edits(self, data, protected):
        r = self.rng
        data = bytearray(data)
        kinds = []
        for _ in range(r.choice([1, 1, 2, 3])):
            pos = r.randrange(len(data) + 1)
            if any(a <= pos < b for a, b in protected):
                continue
            op = r.randrange(4)
            if op == 0 and pos < len(data):
                del data[pos]
                kinds.append("del")
            elif op == 1:
                data[pos:pos] = bytes([r.choice(INTERESTING)])
                kinds.append("ins")
            elif op == 2 and pos < len(data):
                data[pos] = r.choice(INTERESTING)
                kinds.append("set")
            else:  # a CRLF becomes LF or CR
                crlf = data.find(b"\r\n", pos)
                if crlf >= 0 and not any(a <= crlf < b for a, b in protected):
                    data[crlf:crlf + 2] = r.choice([b"\n", b"\r"])
                    kinds.append("eol")
            # Protected spans after pos moved: recompute them from the id text.
            protected = _id_spans(data)
        return bytes(data), "bytes:" + ",".join(kinds)

    def case(self, n):
        r = self.rng
        name = str(n)
        count = r.choice([1, 1, 1, 2, 2, 3])
        requests = [self.base(f"dc-{name}-{i}") for i in range(count)]
        kinds = []
        style = r.random()
        if style < 0.2:
            kinds.append("plain")
        elif style < 0.3:
            # A request hidden in the body of another, framed so that a reader that gets the
            # length wrong takes it for the next request.
            hidden = self.base(f"dc-{name}-h0", body_kind="none")
            inner, _ = hidden.render()
            outer = requests[0]
            outer.method = b"POST"
            outer.fields = [f for f in outer.fields
                            if f[0].lower() not in (b"content-length", b"transfer-encoding")]
            if r.random() < 0.5:
                outer.fields.append((b"Content-Length", str(len(inner) + r.choice([0, 0, -1, 1, -5])).encode()))
                outer.body = inner
            else:
                outer.fields.append((b"Transfer-Encoding", b"chunked"))
                outer.body = _chunked([inner])
            kinds.append("hidden")
            if r.random() < 0.5:
                kinds.append(getattr(self, r.choice(["m_te", "m_cl", "m_cl_te", "m_fold"]))(outer))
        else:
            for req in r.sample(requests, r.choice([1, 1, 2]) if count > 1 else 1):
                kinds.append(getattr(self, r.choice(self.FIELD_MUTATIONS))(req))
        data = b"".join(req.render()[0] for req in requests)
        ids = [req.id for req in requests] + ([f"dc-{name}-h0"] if "hidden" in kinds else [])
        if r.random() < 0.25:
            data, what = self.byte_edits(data, _id_spans(data))
            kinds.append(what)
        return Case(name, "+".join(kinds), data, ids)


def _id_spans(data):
    spans, pos = [], 0
    while True:
        i = data.find(b"X-Request-Id: dc-", pos)
        if i < 0:
            return spans
        end = data.find(b"\r\n", i)
        end = len(data) if end < 0 else end + 2
        # The line break before it belongs to the request line: keep that too.
        spans.append((max(0, i - 2), end))
        pos = end


def generate(count, seed):
    g = Generator(seed)
    return [g.case(n) for n in range(count)]
