#!/usr/bin/env python3
"""LDAP bind sign-ins per second per core (issue 16 figure).

Starts nothing: give it a running `signet serve` (release build) with an ldap provider
`corp` on a local slapd and a public client `app` (see loadtests/ldap/README.md), its pid
and slapd's pid. Runs N complete directory sign-ins from C concurrent workers, each:
authorize -> login page -> the provider's button -> the directory form -> its POST
(service bind, search, user bind, session, code). Reports the wall-clock rate and the CPU
seconds each process used (from /proc), so Signet's share is separate from slapd's and
from this client's: sign-ins per second per core = N / Signet's CPU seconds.
"""
import http.client
import html
import re
import sys
import threading
import time
import urllib.parse

issuer, signet_pid, slapd_pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
total = int(sys.argv[4]) if len(sys.argv) > 4 else 400
workers = int(sys.argv[5]) if len(sys.argv) > 5 else 4
user, password = "alice", "down the rabbit hole"
host = urllib.parse.urlparse(issuer)
TICK = 100  # USER_HZ


def cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def hidden(body, name):
    return html.unescape(re.search(rf'name="{name}" value="([^"]*)"', body).group(1))


def one():
    conn = http.client.HTTPConnection(host.hostname, host.port)
    cookies = {}

    def req(method, url, form=None):
        u = urllib.parse.urlparse(html.unescape(url))
        path = u.path + ("?" + u.query if u.query else "")
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["Origin"] = "null"
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read().decode()
        for k, v in r.getheaders():
            if k.lower() == "set-cookie":
                name, value = v.split(";", 1)[0].split("=", 1)
                cookies[name] = value
        return r.status, r.getheader("Location"), data

    q = urllib.parse.urlencode({
        "client_id": "app", "redirect_uri": "http://127.0.0.1:1/cb", "response_type": "code",
        "scope": "openid", "state": "s", "nonce": "n",
        "code_challenge": "mUC84QHW1XnmFGk31dqlZ81-q8-qS-OxrweG_XEDeIU",
        "code_challenge_method": "S256"})
    status, loc, _ = req("GET", f"{issuer}/oauth2/authorize?{q}")
    assert status == 302, status
    status, _, login = req("GET", loc)
    form = {"interaction": hidden(login, "interaction"), "csrf": hidden(login, "csrf")}
    status, loc, _ = req("POST", f"{issuer}/federation/corp/start", form)
    assert status == 303, (status, _)
    status, _, page = req("GET", loc)
    form = {"interaction": hidden(page, "interaction"), "csrf": hidden(page, "csrf"),
            "username": user, "password": password}
    status, _, done = req("POST", f"{issuer}/federation/corp/ldap", form)
    assert status == 200 and "code=" in done, (status, done[:500])
    conn.close()


def worker(n):
    for _ in range(n):
        one()


one()  # warm up (JIT user created, system trust store loaded)
s0, l0, t0 = cpu(signet_pid), cpu(slapd_pid), time.time()
threads = [threading.Thread(target=worker, args=(total // workers,)) for _ in range(workers)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.time() - t0
done = (total // workers) * workers
s1, l1 = cpu(signet_pid), cpu(slapd_pid)
print(f"{done} sign-ins in {elapsed:.2f} s: {done / elapsed:.0f}/s wall clock")
print(f"signet CPU {s1 - s0:.2f} s: {done / (s1 - s0):.0f} sign-ins per second per core (whole flow)")
print(f"slapd CPU {l1 - l0:.2f} s: {done / max(l1 - l0, 0.01):.0f} sign-ins per slapd core-second")
