"""The real Keystone of the `keystone` fixture: users, tokens, and the auth_token
settings that tools/run_tempest.py gives `volmigrate serve`."""

import json
import subprocess

import pytest

import keystone_env

pytestmark = pytest.mark.integration

# Runs in the keystone venv (it ships keystonemiddleware): the auth_token
# middleware, configured as volmigrate's [keystone_authtoken] is, in front of
# an app that echoes what it was told about the caller.
AUTH_TOKEN_CHECK = """
import json, sys, wsgiref.util
from keystonemiddleware import auth_token
options, tokens = json.loads(sys.argv[1]), json.loads(sys.argv[2])
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    keys = ("HTTP_X_IDENTITY_STATUS", "HTTP_X_PROJECT_ID", "HTTP_X_USER_ID", "HTTP_X_ROLES")
    return [json.dumps({k: environ.get(k) for k in keys}).encode()]
middleware = auth_token.filter_factory({}, **options)(app)
answers = []
for token in tokens:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/v3/volumes", "HTTP_X_AUTH_TOKEN": token}
    wsgiref.util.setup_testing_defaults(environ)
    seen = {}
    body = b"".join(middleware(environ, lambda status, headers, exc=None: seen.update(status=status)))
    answers.append({"status": seen["status"], "body": json.loads(body)})
print(json.dumps(answers))
"""


def test_make_user_gives_a_project_scoped_token(keystone):
    user_id, project_id, token = keystone.make_user("itest-project", "member")
    # validated as auth_token does it: with the service user's own token
    env = keystone.env
    service_token, _ = env.issue_token(env.service_user, env.service_password, env.service_project)
    status, _headers, body = _validate(keystone, token, service_token)
    assert status == 200
    assert body["token"]["user"]["id"] == user_id
    assert body["token"]["project"]["id"] == project_id
    assert "member" in [r["name"] for r in body["token"]["roles"]]   # (+ implied reader)
    catalog = {e["type"]: e for e in body["token"]["catalog"]}
    urls = [ep["url"] for ep in catalog["block-storage"]["endpoints"] if ep["interface"] == "public"]
    assert urls == [f"http://127.0.0.1:{keystone.env.api_port}/v3/{project_id}"]
    assert "volumev3" in catalog and "identity" in catalog


def test_setup_again_is_idempotent(keystone):
    keystone.env.setup()
    status, _h, body = keystone_env.http("GET", keystone.url + "services",
                                         token=keystone.admin_token())
    assert status == 200
    types = sorted(s["type"] for s in body["services"])
    assert types.count("block-storage") == 1 and types.count("volumev3") == 1


def test_auth_token_middleware_accepts_user_tokens_and_rejects_others(keystone):
    _u, project_id, member = keystone.make_user("itest-project", "member")
    _u, admin_project_id, admin = keystone.make_user("itest-admins", "admin")
    options = dict(keystone.authtoken_options, delay_auth_decision="false")
    proc = subprocess.run(
        [str(keystone.env.venv / "bin" / "python"), "-c", AUTH_TOKEN_CHECK,
         json.dumps(options), json.dumps([member, admin, "not-a-token"])],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ok_member, ok_admin, bad = json.loads(proc.stdout.strip().splitlines()[-1])
    assert ok_member["status"].startswith("200"), (ok_member, proc.stderr[-3000:])
    assert ok_member["body"]["HTTP_X_IDENTITY_STATUS"] == "Confirmed"
    assert ok_member["body"]["HTTP_X_PROJECT_ID"] == project_id
    assert "member" in ok_member["body"]["HTTP_X_ROLES"].split(",")
    assert ok_admin["body"]["HTTP_X_PROJECT_ID"] == admin_project_id
    assert "admin" in ok_admin["body"]["HTTP_X_ROLES"].split(",")
    assert bad["status"].startswith("401")


def _validate(keystone, token, validator):
    import urllib.error
    import urllib.request
    req = urllib.request.Request(keystone.url + "auth/tokens",
                                 headers={"X-Auth-Token": validator,
                                          "X-Subject-Token": token,
                                          "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()
