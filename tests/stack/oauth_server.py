#!/usr/bin/python3
"""oauth_server.py — the test stack's OAuth2 authorization server, built on Debian's
python3-authlib (RFC 6749 authorization code + RFC 7636 PKCE, RFC 8628 device flow, refresh
with rotation, RFC 7662 introspection for Dovecot's passdb oauth2, RFC 7009 revocation).

    oauth_server.py PORT

Loopback only; all state in memory. Clients: any client id starting with "postie-" is a public
client (no secret) allowed every grant; "dovecot"/"dovecotsecret" may introspect.
Users: alice and bob. A browser login is approved at once for the login_hint user (alice when
none). Test controls (per client id, so parallel tests do not disturb each other):

    POST /test/approve   user_code=..&user=alice|bob[&deny=1]   approve a device code
    POST /test/config    client_id=..&lifetime=SECONDS&mode=normal|hang|garbage|error500
    POST /test/revoke    client_id=..                           revoke every grant of a client
    GET  /test/stats?client_id=..                               {"refresh": N, "issued": N}
"""
import json
import os
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # plain http on loopback

from authlib.oauth2 import AuthorizationServer, OAuth2Request  # noqa: E402
from authlib.oauth2.rfc6749 import grants, ClientMixin, TokenMixin, AuthorizationCodeMixin  # noqa: E402
from authlib.oauth2.rfc7636 import CodeChallenge  # noqa: E402
from authlib.oauth2.rfc7662 import IntrospectionEndpoint  # noqa: E402
from authlib.oauth2.rfc7009 import RevocationEndpoint  # noqa: E402
from authlib.oauth2.rfc8628 import (  # noqa: E402
    DeviceAuthorizationEndpoint, DeviceCodeGrant, DeviceCredentialDict)

USERS = {"alice", "bob"}
LOCK = threading.RLock()
TOKENS = {}         # access or refresh token string -> Token
CODES = {}          # authorization code -> AuthCode
DEVICES = {}        # device_code -> DeviceCredentialDict
APPROVALS = {}      # user_code -> (user, approved)
CONFIG = {}         # client_id -> {"lifetime": int, "mode": str}
STATS = {}          # client_id -> {"refresh": n, "issued": n}
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 0


def stats(client_id):
    return STATS.setdefault(client_id, {"refresh": 0, "issued": 0})


def config(client_id):
    return CONFIG.setdefault(client_id, {"lifetime": 3600, "mode": "normal"})


class Client(ClientMixin):
    def __init__(self, client_id, secret=None):
        self.client_id, self.secret = client_id, secret

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return None

    def get_allowed_scope(self, scope):
        return scope or ""

    def check_redirect_uri(self, redirect_uri):
        # RFC 8252: any port on the loopback address
        return redirect_uri.startswith("http://127.0.0.1:") or redirect_uri.startswith("http://[::1]:")

    def check_client_secret(self, client_secret):
        return self.secret is not None and secrets.compare_digest(self.secret, client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        if self.secret is None:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return self.secret is None


def query_client(client_id):
    if client_id == "dovecot":
        return Client("dovecot", "dovecotsecret")
    if client_id and client_id.startswith("postie-"):
        return Client(client_id)
    return None


class Token(TokenMixin):
    def __init__(self, client_id, user, scope, kind, lifetime):
        self.client_id, self.user, self.scope, self.kind = client_id, user, scope, kind
        self.issued, self.lifetime, self.revoked = time.time(), lifetime, False

    def check_client(self, client):
        return client.get_client_id() == self.client_id

    def get_scope(self):
        return self.scope

    def get_expires_in(self):
        return self.lifetime

    def is_expired(self):
        return self.kind == "access" and time.time() > self.issued + self.lifetime

    def is_revoked(self):
        return self.revoked


class AuthCode(AuthorizationCodeMixin):
    def __init__(self, client_id, user, scope, redirect_uri, challenge, method):
        self.client_id, self.user, self.scope, self.redirect_uri = client_id, user, scope, redirect_uri
        self.code_challenge, self.code_challenge_method = challenge, method
        self.created = time.time()

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope


def generate_token(grant_type, client, user=None, scope=None, expires_in=None,
                   include_refresh_token=True):
    lifetime = config(client.get_client_id())["lifetime"]
    token = {"token_type": "Bearer", "access_token": "at-" + secrets.token_urlsafe(24),
             "expires_in": lifetime}
    if scope:
        token["scope"] = scope
    if include_refresh_token:
        token["refresh_token"] = "rt-" + secrets.token_urlsafe(24)
    return token


def save_token(token, request):
    client_id = request.client.get_client_id()
    user = request.user
    with LOCK:
        stats(client_id)["issued"] += 1
        TOKENS[token["access_token"]] = Token(client_id, user, token.get("scope", ""), "access",
                                              token["expires_in"])
        if "refresh_token" in token:
            TOKENS[token["refresh_token"]] = Token(client_id, user, token.get("scope", ""),
                                                   "refresh", 0)


class CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["none", "client_secret_basic", "client_secret_post"]

    def save_authorization_code(self, code, request):
        with LOCK:
            CODES[code] = AuthCode(request.client.get_client_id(), request.user, request.scope,
                                   request.redirect_uri, request.data.get("code_challenge"),
                                   request.data.get("code_challenge_method"))

    def query_authorization_code(self, code, client):
        with LOCK:
            item = CODES.get(code)
        if item and item.client_id == client.get_client_id() and time.time() - item.created < 300:
            return item
        return None

    def delete_authorization_code(self, authorization_code):
        with LOCK:
            for k, v in list(CODES.items()):
                if v is authorization_code:
                    del CODES[k]

    def authenticate_user(self, authorization_code):
        return authorization_code.user


class RefreshGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["none", "client_secret_basic", "client_secret_post"]
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation: every refresh returns a new refresh token

    def authenticate_refresh_token(self, refresh_token):
        with LOCK:
            token = TOKENS.get(refresh_token)
        if token and token.kind == "refresh" and not token.revoked:
            stats(token.client_id)["refresh"] += 1
            return token
        return None

    def authenticate_user(self, credential):
        return credential.user

    def revoke_old_credential(self, credential):
        credential.revoked = True


class DeviceGrant(DeviceCodeGrant):
    def query_device_credential(self, device_code):
        with LOCK:
            return DEVICES.get(device_code)

    def query_user_grant(self, user_code):
        with LOCK:
            return APPROVALS.get(user_code)

    def should_slow_down(self, credential):
        return False


class DeviceEndpoint(DeviceAuthorizationEndpoint):
    EXPIRES_IN = 600
    INTERVAL = 1

    def get_verification_uri(self):
        return "http://127.0.0.1:%d/device" % PORT

    def save_device_credential(self, client_id, scope, data):
        data = dict(data, client_id=client_id, scope=scope, expires_at=int(time.time()) + 600)
        with LOCK:
            DEVICES[data["device_code"]] = DeviceCredentialDict(data)


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string, token_type_hint):
        with LOCK:
            token = TOKENS.get(token_string)
        # Dovecot sends no hint: only access tokens may ever log in.
        return token if token and token.kind == "access" else None

    def check_permission(self, token, client, request):
        return client.get_client_id() == "dovecot"

    def introspect_token(self, token):
        return {"active": True, "username": token.user, "client_id": token.client_id,
                "scope": token.scope, "token_type": "Bearer",
                "exp": int(token.issued + token.lifetime)}


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["none", "client_secret_basic", "client_secret_post"]

    def query_token(self, token_string, token_type_hint):
        with LOCK:
            return TOKENS.get(token_string)

    def revoke_token(self, token, request):
        token.revoked = True


class Server(AuthorizationServer):
    def __init__(self):
        super().__init__()
        self._query_client = query_client

    def query_client(self, client_id):
        return query_client(client_id)

    def save_token(self, token, request):
        save_token(token, request)

    def create_oauth2_request(self, request):
        if isinstance(request, OAuth2Request):
            return request
        return OAuth2Request(request["method"], request["uri"], request["form"], request["headers"])

    def handle_response(self, status, body, headers):
        return status, body, headers

    def send_signal(self, name, *args, **kwargs):
        pass


SERVER = Server()
SERVER.register_token_generator("default", generate_token)
SERVER.register_grant(CodeGrant, [CodeChallenge(required=True)])
SERVER.register_grant(RefreshGrant)
SERVER.register_grant(DeviceGrant)
SERVER.register_endpoint(DeviceEndpoint)
SERVER.register_endpoint(Introspection)
SERVER.register_endpoint(Revocation)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # one line per request, without bodies (no secrets)
        sys.stderr.write("oauth: %s %s\n" % (self.command, fmt % args))

    def reply(self, status, body, headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        sent = set()
        for k, v in headers:
            self.send_header(k, v)
            sent.add(k.lower())
        if "content-type" not in sent:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def request_dict(self, form):
        return {"method": self.command, "uri": "http://127.0.0.1:%d%s" % (PORT, self.path),
                "form": form, "headers": dict(self.headers.items())}

    def form(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n).decode("utf-8", "replace") if n else ""
        return dict(parse_qsl(raw, keep_blank_values=True))

    def do_GET(self):
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query))
        if url.path == "/authorize":
            req = SERVER.create_oauth2_request(self.request_dict({}))
            user = query.get("login_hint") or "alice"
            if user not in USERS:
                user = "alice"
            status, body, headers = SERVER.create_authorization_response(req, grant_user=user)
            return self.reply(status, body if isinstance(body, (dict, bytes)) else b"", headers)
        if url.path == "/test/stats":
            with LOCK:
                return self.reply(200, dict(stats(query.get("client_id", ""))))
        if url.path == "/device":
            return self.reply(200, b"device login page (tests approve through /test/approve)",
                              [("Content-Type", "text/plain")])
        return self.reply(404, {"error": "not_found"})

    def do_POST(self):
        url = urlsplit(self.path)
        form = self.form()
        client_id = form.get("client_id", "")
        if url.path == "/token":
            mode = config(client_id)["mode"] if client_id else "normal"
            if mode == "hang":
                time.sleep(120)
                return
            if mode == "garbage":
                return self.reply(200, b"<html>\x00\xff not json", [("Content-Type", "text/html")])
            if mode == "error500":
                return self.reply(500, b"Internal Server Error", [("Content-Type", "text/plain")])
            req = SERVER.create_oauth2_request(self.request_dict(form))
            status, body, headers = SERVER.create_token_response(req)
            return self.reply(status, body, headers)
        if url.path == "/device_authorization":
            req = SERVER.create_oauth2_request(self.request_dict(form))
            status, body, headers = SERVER.create_endpoint_response("device_authorization", req)
            return self.reply(status, body, headers)
        if url.path == "/introspect":
            req = SERVER.create_oauth2_request(self.request_dict(form))
            status, body, headers = SERVER.create_endpoint_response("introspection", req)
            return self.reply(status, body, headers)
        if url.path == "/revoke":
            req = SERVER.create_oauth2_request(self.request_dict(form))
            status, body, headers = SERVER.create_endpoint_response("revocation", req)
            return self.reply(status, body, headers)
        if url.path == "/test/approve":
            with LOCK:
                APPROVALS[form.get("user_code", "")] = (form.get("user", "alice"), not form.get("deny"))
            return self.reply(200, {"ok": True})
        if url.path == "/test/config":
            with LOCK:
                c = config(client_id)
                if "lifetime" in form:
                    c["lifetime"] = int(form["lifetime"])
                if "mode" in form:
                    c["mode"] = form["mode"]
            return self.reply(200, {"ok": True})
        if url.path == "/test/revoke":
            with LOCK:
                for t in TOKENS.values():
                    if t.client_id == client_id:
                        t.revoked = True
            return self.reply(200, {"ok": True})
        return self.reply(404, {"error": "not_found"})


def main():
    global PORT
    httpd = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    httpd.daemon_threads = True
    PORT = httpd.server_address[1]
    sys.stderr.write("oauth: listening on 127.0.0.1:%d\n" % PORT)
    sys.stderr.flush()
    httpd.serve_forever()


if __name__ == "__main__":
    main()
