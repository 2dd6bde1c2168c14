#!/usr/bin/python3
"""SMTP sink for tests (aiosmtpd). Accepts everything on loopback, stores each message
byte-for-byte as a Maildir file and appends the envelope to envelopes.jsonl.

usage: smtp_sink.py DIR [--port 10025] [--host 127.0.0.1] [--tls-cert C --tls-key K] [--oauth-port P]
  DIR/Maildir/new/<seq>.<ts>.sink        raw message (exactly the DATA bytes, CRLF)
  DIR/envelopes.jsonl                    {"seq","file","mail_from","rcpt_tos","mail_options","rcpt_options",
                                          "mail_auth_param","auth_user","peer","size"}  (one JSON object per line)
  DIR/smtp_sink.pid                      pid (for stop)
AUTH PLAIN/LOGIN is advertised and any credentials are accepted (also without TLS);
STARTTLS is offered if --tls-cert/--tls-key are given. SIZE/8BITMIME/SMTPUTF8 are advertised.

OAuth 2: AUTH XOAUTH2 is advertised too and accepted only for a token the issuer says is active
for that user. With --oauth-port, an HTTP introspection relay (RFC 7662) listens there for
Dovecot's oauth2 passdb. Tests run their own token issuers (testkit::TokenEndpoint); a token
names its issuer's loopback port (`mst-<port>-...`), and the relay asks that issuer.
"""
import argparse, asyncio, base64, http.server, json, os, signal, ssl, sys, time, threading
import urllib.parse, urllib.request
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword, SMTP

ap = argparse.ArgumentParser()
ap.add_argument("dir"); ap.add_argument("--host", default="127.0.0.1"); ap.add_argument("--port", type=int, default=10025)
ap.add_argument("--tls-cert"); ap.add_argument("--tls-key"); ap.add_argument("--oauth-port", type=int)
a = ap.parse_args()
os.makedirs(os.path.join(a.dir, "Maildir", "tmp"), exist_ok=True)
os.makedirs(os.path.join(a.dir, "Maildir", "cur"), exist_ok=True)
os.makedirs(os.path.join(a.dir, "Maildir", "new"), exist_ok=True)
lock = threading.Lock(); seq = [0]

def introspect(token):
    """Asks the token's issuer (RFC 7662); an unknown or unreachable issuer means inactive."""
    parts = token.split("-")
    if len(parts) < 3 or parts[0] != "mst" or not parts[1].isdigit():
        return {"active": False}
    req = urllib.request.Request(f"http://127.0.0.1:{int(parts[1])}/introspect",
                                 data=urllib.parse.urlencode({"token": token}).encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())
    except Exception:
        return {"active": False}

class Sink:
    async def auth_XOAUTH2(self, server, args):
        # RFC-less but documented by Google/Microsoft: base64("user=U\x01auth=Bearer T\x01\x01")
        if len(args) < 2:
            return AuthResult(success=False, handled=False)
        try:
            fields = dict(f.split("=", 1) for f in base64.b64decode(args[1]).decode().split("\x01") if "=" in f)
        except Exception:
            return AuthResult(success=False, handled=False)
        user, auth = fields.get("user", ""), fields.get("auth", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        answer = await asyncio.get_running_loop().run_in_executor(None, introspect, token)
        if answer.get("active") is True and answer.get("username") == user:
            return AuthResult(success=True, auth_data=LoginPassword(user.encode(), b""))
        # handled=False: aiosmtpd answers 535 itself (its default leaves the client waiting)
        return AuthResult(success=False, handled=False)

    async def handle_DATA(self, server, session, envelope):
        with lock:
            seq[0] += 1; n = seq[0]
            name = f"{n:06d}.{time.time_ns()}.sink"
            tmp = os.path.join(a.dir, "Maildir", "tmp", name)
            with open(tmp, "wb") as f:
                f.write(envelope.original_content)      # raw bytes, not re-encoded
            os.rename(tmp, os.path.join(a.dir, "Maildir", "new", name))  # atomic publish
            rec = {"seq": n, "file": f"Maildir/new/{name}", "mail_from": envelope.mail_from,
                   "rcpt_tos": envelope.rcpt_tos, "mail_options": envelope.mail_options,
                   "rcpt_options": envelope.rcpt_options,
                   "mail_auth_param": getattr(envelope, "mail_auth_param", None),
                   "auth_user": (session.auth_data.login.decode() if getattr(session.auth_data, "login", None) else None),
                   "peer": list(session.peer)[:2], "size": len(envelope.original_content)}
            with open(os.path.join(a.dir, "envelopes.jsonl"), "a") as f:
                f.write(json.dumps(rec) + "\n")
        return "250 OK queued as %d" % n

class SinkSMTP(SMTP):
    # aiosmtpd rejects the RFC 4954 "AUTH=<addr>" MAIL FROM parameter with 555; Cyrus (JMAP
    # EmailSubmission) sends it whenever the server advertises AUTH. Strip it and remember it.
    async def smtp_MAIL(self, arg):
        if arg:
            parts = arg.split(" ")
            keep = [p for p in parts if not p.upper().startswith("AUTH=")]
            self.envelope.mail_auth_param = next((p[5:] for p in parts if p.upper().startswith("AUTH=")), None)
            arg = " ".join(keep)
        return await super().smtp_MAIL(arg)

class SinkController(Controller):
    def factory(self):
        return SinkSMTP(self.handler, **self.SMTP_kwargs)

def accept_any(server, session, envelope, mechanism, auth_data):
    return AuthResult(success=True, auth_data=auth_data)   # auth_data = LoginPassword(login, password)

kw = dict(hostname=a.host, port=a.port, authenticator=accept_any, auth_required=False,
          auth_require_tls=False, decode_data=False, enable_SMTPUTF8=True, data_size_limit=50 * 1024 * 1024)
if a.tls_cert:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH); ctx.load_cert_chain(a.tls_cert, a.tls_key)
    kw["tls_context"] = ctx
class Relay(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode(errors="replace")
        token = urllib.parse.parse_qs(body).get("token", [""])[0]
        self.answer(token)
    def do_GET(self):
        q = urllib.parse.urlparse(self.path).query
        token = urllib.parse.parse_qs(q).get("token", [""])[0]
        auth = self.headers.get("Authorization") or ""
        self.answer(token or (auth[7:] if auth.startswith("Bearer ") else ""))
    def answer(self, token):
        out = json.dumps(introspect(token)).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out))); self.end_headers(); self.wfile.write(out)
    def log_message(self, *args):
        pass

if a.oauth_port:
    relay = http.server.ThreadingHTTPServer((a.host, a.oauth_port), Relay)
    threading.Thread(target=relay.serve_forever, daemon=True).start()
ctl = SinkController(Sink(), **kw)
ctl.start()                                   # binds and waits until the server answers
with open(os.path.join(a.dir, "smtp_sink.pid"), "w") as f:
    f.write(str(os.getpid()))
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *x: stop.set()); signal.signal(signal.SIGINT, lambda *x: stop.set())
print(f"smtp sink on {a.host}:{a.port} -> {a.dir}", flush=True)
while not stop.wait(0.2):
    pass
ctl.stop(no_assert=True)
os.unlink(os.path.join(a.dir, "smtp_sink.pid"))
