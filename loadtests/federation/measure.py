"""Signs in N times through the upstream and prints Signet's share (see run.sh).

Arguments: down_issuer down_admin up_issuer up_admin N. Standard library only.
"""
import base64
import hashlib
import http.cookiejar
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

DOWN, DOWN_ADMIN, UP, UP_ADMIN, N = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
VERIFIER = "v" * 64
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def opener():
    return urllib.request.build_opener(
        NoRedirect, urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )


def call(o, url, form=None):
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    try:
        r = o.open(urllib.request.Request(url, data=data), timeout=10)
        return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def hidden(body, name):
    return re.search(r'name="%s" value="([^"]*)"' % name, body).group(1)


def sign_in():
    o = opener()
    q = urllib.parse.urlencode({
        "client_id": "app", "redirect_uri": "http://127.0.0.1:1/cb", "response_type": "code",
        "scope": "openid profile email", "state": "s", "nonce": "n", "acr_values": "idp:up",
        "code_challenge": CHALLENGE, "code_challenge_method": "S256",
    })
    s, h, _ = call(o, f"{DOWN}/oauth2/authorize?{q}")
    assert s == 303, s
    s, h, _ = call(o, h["Location"])  # the upstream's authorize: to its login page
    assert s == 302, s
    login = urllib.parse.urljoin(UP, h["Location"])
    s, _, body = call(o, login)
    assert s == 200, s
    s, h, _ = call(o, login.split("?")[0], {
        "interaction": hidden(body, "interaction"), "csrf": hidden(body, "csrf"),
        "username": "alice", "password": "correct horse battery staple",
    })
    assert s == 302, s
    s, _, body = call(o, h["Location"])  # the downstream's callback: a page moving on
    assert s == 200, (s, body)
    href = re.search(r'href="([^"]*)"[^>]*id="continue"', body).group(1)
    href = href.replace("&#x2f;", "/").replace("&#x3d;", "=").replace("&amp;", "&")
    code = urllib.parse.parse_qs(urllib.parse.urlparse(href).query)["code"][0]
    s, _, body = call(o, f"{DOWN}/oauth2/token", {
        "grant_type": "authorization_code", "code": code, "client_id": "app",
        "redirect_uri": "http://127.0.0.1:1/cb", "code_verifier": VERIFIER,
    })
    assert s == 200, (s, body)


def seconds(admin, route, method):
    """(sum, count) of signet_http_request_duration_seconds for route and method."""
    text = urllib.request.urlopen(f"{admin}/metrics", timeout=10).read().decode()
    out = [0.0, 0]
    for line in text.splitlines():
        if line.startswith("signet_http_request_duration_seconds_") and f'route="{route}"' in line and f'method="{method}"' in line:
            v = float(line.rsplit(" ", 1)[1])
            if line.startswith("signet_http_request_duration_seconds_sum"):
                out[0] += v
            elif line.startswith("signet_http_request_duration_seconds_count"):
                out[1] += int(v)
    return out


DOWN_ROUTES = [("/oauth2/authorize", "GET"), ("/federation/{scheme}/callback", "GET"), ("/oauth2/token", "POST")]


def snapshot():
    down = {r: seconds(DOWN_ADMIN, *r) for r in DOWN_ROUTES}
    up_token = seconds(UP_ADMIN, "/oauth2/token", "POST")
    return down, up_token


sign_in()  # the first one fetches discovery and the JWKS: warm-up, not counted
before = snapshot()
start = time.perf_counter()
for _ in range(N):
    sign_in()
wall = time.perf_counter() - start
after = snapshot()
per = {}
for r in DOWN_ROUTES:
    d_sum = after[0][r][0] - before[0][r][0]
    d_n = after[0][r][1] - before[0][r][1]
    assert d_n == N, (r, d_n)
    per[r] = d_sum / N
up_token = (after[1][0] - before[1][0]) / N
assert after[1][1] - before[1][1] == N
share = sum(per.values()) - up_token
print(f"{N} sign-ins through the upstream, one at a time; {wall / N * 1000:.2f} ms each end to end (both servers and this client)")
for (route, method), v in per.items():
    print(f"  downstream {method} {route}: {v * 1000:.3f} ms")
print(f"  upstream POST /oauth2/token (inside the callback): {up_token * 1000:.3f} ms")
print(f"Signet's share of an upstream sign-in: {share * 1000:.3f} ms")
