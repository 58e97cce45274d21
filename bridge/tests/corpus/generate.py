#!/usr/bin/env python3
"""Writes the hostile-input corpus replayed by bridge/tests/corpus.rs.

http/*.http: one raw HTTP/1.1 request each (placeholders {{TOKEN}},
{{TOKEN_OTHER_GAME}}, {{TOKEN_TAMPERED}}, {{TOKEN_EXPIRED}},
{{TOKEN_RETIRED_KEY}} are filled in by the test); a name
starting with `raw-` may also be answered by closing the connection.
ws/*.txt, ws/*.bin: one WebSocket frame each (text or binary), sent to
/ws/games/1 after the upgrade.

Run it again after editing: python3 bridge/tests/corpus/generate.py
"""
import os
import shutil

ROOT = os.path.dirname(os.path.abspath(__file__))
HTTP = os.path.join(ROOT, "http")
WS = os.path.join(ROOT, "ws")
for d in (HTTP, WS):
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)

count = {"http": 0, "ws": 0}


def req(name, method, path, headers=None, body=b"", raw=False, content_length=True):
    head = [f"{method} {path} HTTP/1.1", "Host: localhost", "Connection: close"]
    for h in headers or []:
        head.append(h)
    if isinstance(body, str):
        body = body.encode()
    if body and content_length:
        head.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    write(name, data, raw)


def write(name, data, raw=False):
    count["http"] += 1
    prefix = "raw-" if raw else ""
    path = os.path.join(HTTP, f"{prefix}{count['http']:03d}-{name}.http")
    with open(path, "wb") as f:
        f.write(data)


def frame(name, data, binary=False):
    count["ws"] += 1
    ext = "bin" if binary else "txt"
    with open(os.path.join(WS, f"{count['ws']:03d}-{name}.{ext}"), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


JSON = "Content-Type: application/json"
AUTH = "Authorization: Bearer {{TOKEN}}"
JOIN = "/api/games/1/join"
ACT = "/api/games/1/actions"

# 1. Wrong methods.
paths = [JOIN, ACT, "/api/games/1", "/api/config", "/healthz", "/readyz", "/metrics",
         "/openapi.yaml", "/ws/games/1", "/purchase_a_sword", "/upgrade_shield"]
for p in paths:
    for m in ["PUT", "DELETE", "PATCH", "OPTIONS"]:
        req(f"method-{m.lower()}-{p.strip('/').replace('/', '_')}", m, p, [JSON, AUTH], "{}")
for p in ["/api/games/1", "/api/config", "/healthz", "/metrics", "/openapi.yaml",
          "/purchase_a_sword", "/purchase_knife"]:
    req(f"method-post-{p.strip('/').replace('/', '_')}", "POST", p, [JSON], "{}")
for p in [JOIN, ACT]:
    req(f"method-get-{p.strip('/').replace('/', '_')}", "GET", p)

# 2. Content types that are not JSON.
for ct in ["text/plain", "text/html", "application/x-www-form-urlencoded",
           "multipart/form-data; boundary=x", "application/xml", "application/octet-stream",
           "image/png", "application/jsonx", "json", "text/json; charset=utf-8"]:
    safe = ct.split(";")[0].replace("/", "_")
    req(f"ctype-join-{safe}", "POST", JOIN, [f"Content-Type: {ct}"], '{"name":"Rome"}')
    req(f"ctype-act-{safe}", "POST", ACT, [f"Content-Type: {ct}", AUTH], '{"type":"purchase_sword"}')

# 3. Invalid and truncated JSON.
bad_json = ["{", '{"name":', '{"name":"x"', "[", "null", "true", "1", '"str"', '{name:"x"}',
            "{'name':'x'}", '{"name":"x",}', '{"name":NaN}', '{"name":"x"} // c',
            '/* c */ {"name":"x"}', "\ufeff{\"name\":\"x\"}", '{"name":"x"}{"name":"y"}',
            "[" * 5000, '{"name":"\\ud800"}', '{"name":"\\x41"}', '{"name":"x" "y"}',
            '{"name":"x"', " ", "\t\n", '{"":""}', "{}"]
for i, b in enumerate(bad_json):
    req(f"json-join-{i:02d}", "POST", JOIN, [JSON], b)
    body = b.replace("name", "type").replace('"x"', '"purchase_sword"')
    req(f"json-act-{i:02d}", "POST", ACT, [JSON, AUTH], body)
req("json-join-empty", "POST", JOIN, [JSON], b"")
req("json-act-empty", "POST", ACT, [JSON, AUTH], b"")

# 4. Invalid UTF-8.
bad_utf8 = [b'{"name":"\xff\xfe"}', b'{"name":"\xc0\xae"}', b'{"name":"\xed\xa0\x80"}',
            b'{"name":"\xf8\x88\x80\x80\x80"}', b'{"name":"a\x80b"}', b"\xff\xff\xff\xff",
            b'{"na\xffme":"x"}', b'{"name":"\xe2\x82"}', b'\xef\xbb{"name":"x"}',
            b'{"name":"\xf4\x90\x80\x80"}']
for i, b in enumerate(bad_utf8):
    req(f"utf8-join-{i:02d}", "POST", JOIN, [JSON], b)
    req(f"utf8-act-{i:02d}", "POST", ACT, [JSON, AUTH], b.replace(b"name", b"type"))

# 5. Wrong field types and values.
names = ['1', '[]', '{}', 'null', 'true', '""', '"   "', '"' + "x" * 33 + '"', '"Ro\\u0007me"',
         '"Ro\\nme"', '"Ro\\u001bme"', '"Ro\\u0000me"', '"' + "é" * 40 + '"', '1e400', '-0']
for i, n in enumerate(names):
    req(f"field-name-{i:02d}", "POST", JOIN, [JSON], '{"name":%s}' % n)
types = ['1', '"fly"', '"join"', 'null', '[]', '{}', '"PURCHASE_SWORD"', '"purchase_sword "',
         '""', 'true']
for i, t in enumerate(types):
    req(f"field-type-{i:02d}", "POST", ACT, [JSON, AUTH], '{"type":%s}' % t)
ids = ['5', '""', '"' + "a" * 200 + '"', '[]', '{}', 'true', '"a\\u0007b"', '"a\\nb"']
for i, a in enumerate(ids):
    req(f"field-action-id-{i:02d}", "POST", ACT, [JSON, AUTH],
        '{"type":"purchase_sword","action_id":%s}' % a)
req("field-idempotency-key-long", "POST", ACT, [JSON, AUTH, "Idempotency-Key: " + "k" * 300],
    '{"type":"purchase_sword"}')

# 6. Unknown fields.
unknown = ['{"name":"x","admin":true}', '{"name":"x","gold":1000000}', '{"Name":"x"}',
           '{"name":"x","player_id":"someone-else"}', '{"nom":"x"}']
for i, u in enumerate(unknown):
    req(f"unknown-join-{i:02d}", "POST", JOIN, [JSON], u)
unknown_act = ['{"type":"purchase_sword","gold":1000000000}', '{"type":"purchase_sword","player_id":"x"}',
               '{"type":"purchase_sword","game_id":2}', '{"kind":"purchase_sword"}',
               '{"type":"purchase_sword","version":0}']
for i, u in enumerate(unknown_act):
    req(f"unknown-act-{i:02d}", "POST", ACT, [JSON, AUTH], u)

# 7. Numbers out of range and odd ids in paths.
for i, g in enumerate(["18446744073709551616", "-1", "1e3", "0x10", "abc", "1.5",
                       "99999999999999999999999", "%20", "1%00", "１"]):
    req(f"path-join-{i:02d}", "POST", f"/api/games/{g}/join", [JSON], '{"name":"x"}')
    req(f"path-act-{i:02d}", "POST", f"/api/games/{g}/actions", [JSON, AUTH], '{"type":"purchase_sword"}')
    req(f"path-get-{i:02d}", "GET", f"/api/games/{g}")
    req(f"path-ws-{i:02d}", "GET", f"/ws/games/{g}")
req("path-ws-resume-bad", "GET", "/ws/games/1?resume_from=abc")
req("path-ws-resume-negative", "GET", "/ws/games/1?resume_from=-5")

# 8. Bodies too large.
for size in [16 * 1024 + 1, 20 * 1024, 64 * 1024]:
    name = '{"name":"' + "x" * size + '"}'
    req(f"large-join-{size}", "POST", JOIN, [JSON], name)
    req(f"large-act-{size}", "POST", ACT, [JSON, AUTH], '{"type":"purchase_sword","action_id":"' + "x" * size + '"}')
req("large-declared-length", "POST", JOIN, [JSON, "Content-Length: 99999999"], '{"name":"x"}',
    content_length=False)

# 9. Huge headers and header floods.
req("header-huge", "GET", "/healthz", ["X-Big: " + "a" * 20_000])
req("header-flood", "GET", "/healthz", [f"X-H{i}: v" for i in range(500)])
req("header-cookie-huge", "GET", "/api/config", ["Cookie: " + "c=" + "v" * 20_000])
req("header-auth-huge", "POST", ACT, [JSON, "Authorization: Bearer " + "t" * 20_000],
    '{"type":"purchase_sword"}')
req("header-ua-huge", "GET", "/purchase_a_sword", ["User-Agent: " + "u" * 20_000])
req("header-accept-huge", "POST", JOIN, [JSON, "Accept: " + "a" * 20_000], '{"name":"x"}')
req("header-host-huge", "GET", "/healthz", ["X-Forwarded-Host: " + "h" * 20_000])
req("header-xff-flood", "POST", JOIN, [JSON] + [f"X-Forwarded-For: 10.0.0.{i}" for i in range(300)],
    '{"name":"x"}')

# 10. Path traversal and odd encodings on static files.
for i, p in enumerate(["/../../etc/passwd", "/..%2f..%2fetc%2fpasswd", "/%2e%2e/%2e%2e/etc/passwd",
                       "/secret/../../Cargo.toml", "/index.html%00.txt", "/%c0%ae%c0%ae/etc/passwd",
                       "/....//....//etc/passwd", "//etc/passwd", "/.git/config", "/%252e%252e/Cargo.toml",
                       "/../Cargo.toml", "/..;/Cargo.toml", "/%2e%2e%2fCargo.toml", "/.%2e/Cargo.toml",
                       "/assets/../../../../etc/shadow", "/%u002e%u002e/etc/passwd",
                       "/..%c1%9c..%c1%9cetc/passwd", "/outside.txt", "/../outside.txt",
                       "/%2e%2e/outside.txt", "/static/..%2f..%2foutside.txt", "/nope.js",
                       "/index.html/..%2f..%2foutside.txt", "/%00", "/%ff%fe"]):
    req(f"static-{i:02d}", "GET", p)
for i, p in enumerate(["/..\\..\\windows\\win.ini", "/a b", "/\x7f", "/%"]):
    req(f"static-raw-{i:02d}", "GET", p, raw=True)

# 11. Forged, tampered and misplaced tokens.
for i, a in enumerate(["Bearer x", "Bearer ", "Basic YWxhZGRpbjpvcGVuc2VzYW1l", "bearer {{TOKEN}}",
                       "Bearer {{TOKEN_TAMPERED}}", "Bearer {{TOKEN_OTHER_GAME}}", "Bearer {{TOKEN}}x",
                       "Bearer a.b.c", "Bearer ....", "Token {{TOKEN}}", "Bearer eyJhbGciOiJub25lIn0.e30.",
                       "Bearer " + "A" * 5000]):
    req(f"token-{i:02d}", "POST", ACT, [JSON, f"Authorization: {a}"], '{"type":"purchase_sword"}')
req("token-missing", "POST", ACT, [JSON], '{"type":"purchase_sword"}')
req("token-twice", "POST", ACT, [JSON, "Authorization: Bearer x", "Authorization: Bearer y"],
    '{"type":"purchase_sword"}')

# 12. Malformed HTTP.
raw = [b"GARBAGE\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
       b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
       b"GET / HTTP/1.1\r\nHost: x\r\nX\x00Y: z\r\n\r\n",
       b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n folded\r\n\r\n",
       b"POST /api/games/1/join HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
       b"POST /api/games/1/join HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
       b"POST /api/games/1/join HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
       b"POST /api/games/1/join HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
       b"POST /api/games/1/join HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
       b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
       b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
       b"POST /api/games/1/join HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"name\":",
       b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
       b"G\x00T / HTTP/1.1\r\nHost: x\r\n\r\n",
       b"\r\n\r\n\r\n\r\n"]
for i, r in enumerate(raw):
    write(f"malformed-{i:02d}", r, raw=True)

# 13. Tokens that were genuine once: expired, and signed by a secret no longer
# configured ({{TOKEN_EXPIRED}}, {{TOKEN_RETIRED_KEY}}, filled in by the test).
req("token-expired", "POST", ACT, [JSON, "Authorization: Bearer {{TOKEN_EXPIRED}}"],
    '{"type":"purchase_sword"}')
req("token-retired-key", "POST", ACT, [JSON, "Authorization: Bearer {{TOKEN_RETIRED_KEY}}"],
    '{"type":"purchase_sword"}')

# WebSocket frames.
for i, t in enumerate(["", "hello", "{}", '{"resume_from":-1}', '{"resume_from":"x"}',
                       '{"resume_from":1,"x":2}', '{"resume_from":1.5}', '{"resume_from":null}',
                       "[1,2,3]", "null", '{"resume_from":18446744073709551616}',
                       '{"type":"purchase_sword"}', "x" * 5000, "\u0000", '{"resume_from":1}{',
                       "é" * 3000]):
    frame(f"text-{i:02d}", t)
for i, b in enumerate([b"\x00", b"\xff" * 10, bytes(range(256)), b'{"resume_from":1}',
                       b"\x89\x00", b"x" * 70000]):
    frame(f"binary-{i:02d}", b, binary=True)
frame("text-huge", "y" * 70000)

print(f"{count['http']} HTTP requests, {count['ws']} WebSocket frames")
