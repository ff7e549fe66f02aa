"""A test LMS: signs Moodle-shaped id_tokens with its own RSA key and serves its JWKS over HTTP.

It drives the real flow through a Flask test client: third-party login (with the cookie check
page a browser would pass), the redirect to the platform's auth URL, and the id_token POST.
"""

from __future__ import annotations

import html
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

LTI = "https://purl.imsglobal.org/spec/lti/claim/"
DL_SETTINGS = "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings"
INSTRUCTOR = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"
LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
SYSTEM_ADMIN = "http://purl.imsglobal.org/vocab/lis/v2/system/person#Administrator"
INSTITUTION_ADMIN = "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Administrator"
DROP = object()  # a claim override that removes the claim

_KEYS: list[rsa.RSAPrivateKey] = []


def rsa_key(n: int = 0) -> rsa.RSAPrivateKey:
    """The n-th test key; generated once per test session (2048-bit generation is slow)."""
    while len(_KEYS) <= n:
        _KEYS.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return _KEYS[n]


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return jwk | {"kid": kid, "alg": "RS256", "use": "sig"}


class PlatformServer:
    """The platform's web side on a loopback port: its JWKS, and for browser tests a course page
    that frames the tool, and the OIDC auth endpoint answering with an auto-submitted id_token.

    `mode` simulates keyset outages: ok | error | junk | empty | slow.
    """

    def __init__(self, platform: TestPlatform):
        self.platform = platform
        self.mode = "ok"
        self.delay = 6.0  # seconds a slow answer takes
        self.requests = 0  # keyset requests
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path, _, query = self.path.partition("?")
                if path == "/mod/lti/certs.php":
                    server.requests += 1
                    return self.keyset()
                if path == "/mod/lti/auth.php":
                    return self.html(server.platform.auth_response(parse_qs(query)))
                if path == "/course":
                    return self.html(server.platform.course_page())
                if path == "/post_message_forwarding":  # Canvas's storage frame
                    return self.html(server.platform.storage_frame())
                if path == "/launch-form":
                    return self.html(server.platform.login_form())
                if path == "/mod/lti/return.php":  # launch_presentation.return_url
                    return self.html("<!doctype html><title>Course</title>Back in the course")
                self.send_response(404)
                self.end_headers()

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.partition("?")[0] == "/mod/lti/contentitem_return.php":
                    server.platform.returned.append(parse_qs(body.decode())["JWT"][0])
                    return self.html("<!doctype html><title>Course</title>Back in the course")
                self.send_response(404)
                self.end_headers()

            def keyset(self):
                if server.mode == "slow":
                    time.sleep(server.delay)
                if server.mode == "error":
                    self.send_response(500)
                    self.end_headers()
                    return
                body = {
                    "junk": b"<html>not json</html>",
                    "empty": b'{"keys": []}',
                }.get(server.mode) or json.dumps(server.platform.jwks()).encode()
                self.send(body, "application/json")

            def html(self, text: str):
                self.send(text.encode(), "text/html; charset=utf-8")

            def send(self, body: bytes, content_type: str):
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/mod/lti/certs.php"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Login:
    """What the tool sent the browser to the platform with."""

    response: Any
    params: dict[str, str] = field(default_factory=dict)

    @property
    def state(self) -> str:
        return self.params["state"]

    @property
    def nonce(self) -> str:
        return self.params["nonce"]


class TestPlatform:
    """A Moodle-like platform: issuer, client ID, deployment, its own key and JWKS."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        issuer: str | None = "https://lms.example.edu",
        client_id: str = "Xq7Lm2Pz9Rt4Wv1",
        deployment_id: str = "5",
    ):
        """Without an issuer the platform is its own web server (http://localhost:PORT)."""
        self.client_id = client_id
        self.deployment_id = deployment_id
        self.key = rsa_key(0)
        self.kid = "moodle-key-1"
        self.published: list[tuple[rsa.RSAPrivateKey, str]] = [(self.key, self.kid)]
        self.server = PlatformServer(self)
        self.issuer = issuer or f"http://localhost:{self.server.port}"
        self.platform = None
        self.tool_url = ""  # where the browser-facing pages send the browser (browser tests)
        self.browser_roles = [LEARNER]  # roles of the user signed in to the web side
        self.browser_message_type = "LtiResourceLinkRequest"  # what the web side launches
        self.browser_custom: dict[str, str] = {}  # the link's custom claim (a linked media_id)
        self.returned: list[str] = []  # deep-linking answers posted back to the web side
        self.frame = ("900", "600")  # the course page's iframe: width and height attributes
        # Platform Storage (browser tests): the lti_storage_target the web side sends
        # ("post_message_forwarding" as Canvas, "_parent" as Sakai; None as Moodle), and whether
        # its storage answers lti.put_data / lti.get_data at all ("put": put_data only), and
        # the spelling it speaks ("org.imsglobal." as Brightspace): the other spelling gets an
        # unsupported_subject error.
        self.storage_target: str | None = None
        self.storage_answers: bool | str = True
        self.storage_prefix = ""

    # keys

    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(key, kid) for key, kid in self.published]}

    def rotate_key(self, n: int = 1) -> None:
        """Sign with the n-th test key from now on and publish only it, as Moodle does."""
        self.key, self.kid = rsa_key(n), f"moodle-key-{n + 1}"
        self.published = [(self.key, self.kid)]

    # registration

    def register(self, db, **overrides):
        from lti_tool.models import LTIPlatform

        values = {
            "name": "Test Moodle",
            "platform_id": self.issuer,
            "client_id": self.client_id,
            "auth_login_url": f"{self.issuer}/mod/lti/auth.php",
            "auth_token_url": f"{self.issuer}/mod/lti/token.php",
            "key_set_url": self.server.url,
            "deployment_ids": [self.deployment_id],
        } | overrides
        self.platform = LTIPlatform(**values)
        db.session.add(self.platform)
        db.session.commit()
        return self.platform

    # tokens

    def claims(self, nonce: str = "", message_type: str = "LtiResourceLinkRequest",
               **overrides) -> dict[str, Any]:
        """A Moodle-shaped id_token body; `overrides` replace claims (DROP removes one).

        Keys may be short LTI claim names (`roles` means `…/claim/roles`).
        """
        now = int(time.time())
        body: dict[str, Any] = {
            "nonce": nonce,
            "iat": now,
            "exp": now + 60,
            "iss": self.issuer,
            "aud": self.client_id,
            LTI + "deployment_id": self.deployment_id,
            LTI + "target_link_uri": "https://tool.example.org/lti/launch",
            "sub": "318",
            LTI + "roles": [LEARNER],
            LTI + "context": {"id": "24", "label": "HIST210", "title": "Modern History",
                              "type": ["CourseSection"]},
            LTI + "message_type": message_type if message_type is not DROP else None,
            "given_name": "Grace",
            "family_name": "Hopper",
            "name": "Grace Hopper",
            "email": "g.hopper@example.edu",
            LTI + "ext": {"lms": "moodle-2", "user_username": "ghopper"},
            LTI + "launch_presentation": {
                "locale": "en", "document_target": "iframe",
                "return_url": f"{self.issuer}/mod/lti/return.php?course=24&sesskey=Ab12Cd34Ef",
            },
            LTI + "tool_platform": {"product_family_code": "moodle", "version": "2024100700",
                                    "guid": "lms.example.edu", "name": "Example LMS"},
            LTI + "version": "1.3.0",
            LTI + "custom": {},
        }
        if message_type is DROP:
            del body[LTI + "message_type"]
        if message_type in ("LtiResourceLinkRequest", DROP):
            body[LTI + "resource_link"] = {"id": "57", "title": "Lecture 3 recording",
                                           "description": ""}
        elif message_type == "LtiDeepLinkingRequest":
            body[LTI + "launch_presentation"] = {"locale": "en"}
            body[DL_SETTINGS] = {
                "accept_types": ["ltiResourceLink"],
                "accept_presentation_document_targets": ["frame", "iframe", "window"],
                "accept_copy_advice": False, "accept_multiple": True, "accept_unsigned": False,
                "auto_create": False, "can_confirm": False,
                "deep_link_return_url": f"{self.issuer}/mod/lti/contentitem_return.php"
                                        "?course=24&id=5&sesskey=Ab12Cd34Ef",
                "title": "", "text": "",
            }
        for name, value in overrides.items():
            top_level = name in body or name in ("azp", "nbf", "preferred_username")
            key = name if top_level or "/" in name else LTI + name
            if value is DROP:
                body.pop(key, None)
            else:
                body[key] = value
        return body

    def sign(self, body: dict[str, Any], key=None, headers: dict | None = None,
             algorithm: str = "RS256") -> str:
        header = {"kid": self.kid} if headers is None else headers
        return jwt.encode(body, key or self.key, algorithm=algorithm, headers=header)

    # the browser's part

    def login_params(self, **extra) -> dict[str, str]:
        params = {
            "iss": self.issuer,
            "login_hint": "318",
            "target_link_uri": "https://tool.example.org/lti/launch",
            "lti_message_hint": json.dumps({"launchid": uuid.uuid4().hex, "cmid": 57}),
            "client_id": self.client_id,
            "lti_deployment_id": self.deployment_id,
        } | extra
        return {k: v for k, v in params.items() if v is not None}

    def login(self, client, **extra) -> Login:
        """POST the login as Moodle does, pass the cookie check as a browser would."""
        params = self.login_params(**extra)
        first = client.post("/lti/login", data=params)
        if first.status_code != 200 or b"lti1p3_new_window" not in first.data:
            return Login(first)
        second = client.get("/lti/login", query_string=params | {"lti1p3_new_window": "1"})
        if second.status_code != 302:
            return Login(second)
        query = parse_qs(urlsplit(second.headers["Location"]).query)
        return Login(second, {k: v[0] for k, v in query.items()})

    def launch(self, client, *, token: str | None = None, state: str | None = None,
               login: Login | None = None, **claim_overrides):
        """Log in, then POST a signed id_token carrying the login's nonce. Returns the response."""
        login = login or self.login(client)
        assert login.params, f"login failed: {login.response.status_code}"
        if token is None:
            token = self.sign(self.claims(nonce=login.nonce, **claim_overrides))
        data = {"id_token": token, "state": login.state if state is None else state}
        return client.post("/lti/launch", data=data)

    # pages a browser sees on the platform (browser tests)

    def course_page(self) -> str:
        storage = ""
        if self.storage_target == "post_message_forwarding":
            storage = ('<iframe name="post_message_forwarding" src="/post_message_forwarding" '
                       'title="storage" hidden></iframe>')
        elif self.storage_target == "_parent":
            storage = self.storage_script()
        return (
            "<!doctype html><title>Modern History</title>"
            "<style>body{margin:8px}iframe{border:1px solid #999;display:block}</style>"
            f"<h1>Course: Modern History</h1>{storage}"
            f'<iframe id="tool" src="/launch-form" width="{self.frame[0]}" '
            f'height="{self.frame[1]}" allow="fullscreen"></iframe>'
        )

    def storage_frame(self) -> str:
        return f"<!doctype html><title>storage</title>{self.storage_script()}"

    def storage_script(self) -> str:
        """The platform's side of lti.put_data / lti.get_data (lti-pm-s), for the tool's origin
        only; what it was asked is kept in `window.ltiStorageSeen` for the tests to read."""
        tool_origin = json.dumps("{}://{}".format(*urlsplit(self.tool_url)[:2]))
        answers = json.dumps(self.storage_answers)  # true, false or "put" (put_data only)
        prefix = json.dumps(self.storage_prefix)
        return (
            "<script>(function(){var store={};window.ltiStorageSeen=[];"
            "window.addEventListener('message',function(e){"
            f"var d=e.data||{{}};if(e.origin!=={tool_origin})return;var p={prefix};"
            "var s=String(d.subject||'');if(s.indexOf(p)!==0||!/^lti\\.(put|get)_data$/.test("
            "s.slice(p.length))){if(/lti\\.(put|get)_data$/.test(s))e.source.postMessage("
            "{subject:s+'.response',message_id:d.message_id,error:{code:'unsupported_subject',"
            "message:'not in this spelling'}},e.origin);return;}"
            "s=s.slice(p.length);window.ltiStorageSeen.push(s+' '+d.key);"
            f"var a={answers};if(!a||(a==='put'&&s!=='lti.put_data'))return;"
            "var reply={subject:d.subject+'.response',message_id:d.message_id,key:d.key};"
            "if(s==='lti.put_data'){store[d.key]=d.value;reply.value=d.value;}"
            "else if(d.key in store){reply.value=store[d.key];}"
            "else{reply.error={code:'bad_request',message:'no such key'};}"
            "e.source.postMessage(reply,e.origin);});})();</script>"
        )

    def login_form(self) -> str:
        """Moodle's auto-submitted third-party login, inside the iframe."""
        extra = {"lti_storage_target": self.storage_target} if self.storage_target else {}
        return self._autosubmit(f"{self.tool_url}/lti/login", self.login_params(**extra))

    def auth_response(self, query: dict[str, list[str]]) -> str:
        """Moodle's auth.php: an auto-submitted id_token for the signed-in user."""
        param = {k: v[0] for k, v in query.items()}
        assert param["redirect_uri"] == f"{self.tool_url}/lti/launch", param["redirect_uri"]
        token = self.sign(self.claims(nonce=param["nonce"], sub=param["login_hint"],
                                      roles=self.browser_roles,
                                      message_type=self.browser_message_type,
                                      custom=self.browser_custom))
        fields = {"id_token": token, "state": param["state"]}
        if self.storage_target:
            fields["lti_storage_target"] = self.storage_target
        return self._autosubmit(param["redirect_uri"], fields)

    @staticmethod
    def _autosubmit(action: str, fields: dict[str, str]) -> str:
        inputs = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in fields.items()
        )
        return (
            f'<!doctype html><form id="f" method="post" action="{html.escape(action)}">'
            f"{inputs}</form><script>document.getElementById('f').submit()</script>"
        )


def http_launch(platform: TestPlatform, base: str, session, barrier=None, **claim_overrides):
    """The whole flow over real HTTP with a `requests` session as the browser.

    With a barrier, every browser logs in first and all POST their id_tokens at once.
    """
    params = platform.login_params(login_hint=str(claim_overrides.get("sub", "318")))
    first = session.post(f"{base}/lti/login", data=params, allow_redirects=False, timeout=30)
    assert first.status_code == 200, first.text[:300]
    second = session.get(f"{base}/lti/login", params=params | {"lti1p3_new_window": "1"},
                         allow_redirects=False, timeout=30)
    assert second.status_code == 302, second.text[:300]
    query = parse_qs(urlsplit(second.headers["Location"]).query)
    token = platform.sign(platform.claims(nonce=query["nonce"][0], **claim_overrides))
    if barrier is not None:
        barrier.wait(timeout=60)
    return session.post(f"{base}/lti/launch", data={"id_token": token, "state": query["state"][0]},
                        allow_redirects=False, timeout=60)
