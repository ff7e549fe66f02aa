"""The production files (deploy/, Dockerfile, compose.yaml) run what README's "Production" says,
with settings the tool reads, and nginx accepts the site."""

import ast
import json
import re
import shlex
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lti_tool.config import from_env
from lti_tool.services import jobs

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SITE = DEPLOY / "nginx" / "lti-tool.conf"
COMPOSE_SITE = DEPLOY / "nginx" / "compose.conf"
ENV_EXAMPLE = DEPLOY / "env.example"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
# Services of compose.yaml that run the tool's image (the others are PostgreSQL, Redis, nginx).
TOOL_SERVICES = ("migrate", "tool", "worker-long", "worker-short", "scheduler")
# The programs whose invocations must agree everywhere.
PROGRAMS = ("gunicorn", "celery", "flask")
# deploy/lti-tool-flask COMMAND is `flask --app wsgi COMMAND` as the units run it.
FLASK_WRAPPER = "lti-tool-flask"
# Where the tool reads its environment: every module of the package, gunicorn's settings, wsgi.
SETTINGS_SOURCES = [*sorted((ROOT / "lti_tool").rglob("*.py")), ROOT / "gunicorn.conf.py",
                    ROOT / "wsgi.py"]


# --- readers -------------------------------------------------------------------------------

def readme() -> str:
    return (ROOT / "README.md").read_text()


def production_section() -> str:
    match = re.search(r"^## Production\n(.*?)(?=^## )", readme(), re.S | re.M)
    assert match, "README.md has no '## Production' section"
    return match.group(1)


def code_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", markdown, re.S | re.M)


def normalized(argv: list[str]) -> tuple[str, ...] | None:
    """An invocation of gunicorn, celery or flask as a tuple of words, wherever it is written:
    programs named by path, through deploy/lti-tool-flask or `docker compose run|exec`; None
    for anything else."""
    if argv[:2] == ["docker", "compose"]:
        argv = argv[next((i for i, w in enumerate(argv) if w in PROGRAMS), len(argv)):]
    while argv and argv[0] in ("sudo", "exec"):
        argv = argv[1:]
    if not argv:
        return None
    program = Path(argv[0]).name
    if program == FLASK_WRAPPER:
        return ("flask", "--app", "wsgi", *argv[1:])
    if program in PROGRAMS:
        return (program, *argv[1:])
    return None


def shell_commands(line: str) -> list[tuple[str, ...]]:
    """The tool invocations on one shell line (comments dropped, `a && b` split)."""
    found, argv = [], []
    for word in [*shlex.split(line, comments=True), "&&"]:
        if word == "&&":
            if command := normalized(argv):
                found.append(command)
            argv = []
        else:
            argv.append(word)
    return found


def readme_commands() -> set[tuple[str, ...]]:
    commands = set()
    for block in code_blocks(production_section()):
        for line in block.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                commands.update(shell_commands(line))
    return commands


def unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as {section: {key: [values]}} (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"{path.name}: {line!r} is outside any section"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def unit_commands(path: Path) -> list[tuple[str, ...]]:
    service = unit(path)["Service"]
    commands = []
    for key in ("ExecStartPre", "ExecStart", "ExecStartPost"):
        for value in service.get(key, []):
            # systemd: a leading -, @, + or ! changes how it runs; %% is a literal %.
            argv = shlex.split(value.lstrip("-@+!").replace("%%", "%"))
            command = normalized(argv)
            assert command, f"{path.name}: {key}={value} runs none of {PROGRAMS}"
            commands.append(command)
    return commands


def unit_environment(path: Path) -> dict[str, str]:
    service = unit(path)["Service"]
    values = {}
    for value in service.get("Environment", []):
        for pair in shlex.split(value):
            name, _, setting = pair.partition("=")
            values[name] = setting
    return values


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def compose_commands(service: dict) -> list[tuple[str, ...]]:
    command = service.get("command")
    if command is None:
        return []
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if argv[:2] == ["sh", "-c"]:
        return shell_commands(argv[2])
    found = normalized(argv)
    return [found] if found else []


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def dockerfile_cmd() -> tuple[str, ...]:
    lines = [line for line in dockerfile().splitlines() if line.startswith("CMD ")]
    assert len(lines) == 1, "the Dockerfile needs exactly one CMD"
    command = normalized(json.loads(lines[0].removeprefix("CMD ")))
    assert command, f"the Dockerfile's CMD runs none of {PROGRAMS}: {lines[0]}"
    return command


def dockerfile_env() -> dict[str, str]:
    text = dockerfile().replace("\\\n", " ")
    values = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line.removeprefix("ENV ")):
                name, _, value = pair.partition("=")
                values[name] = value
    return values


def env_example() -> tuple[dict[str, str], set[str]]:
    """(the settings env.example sets, the ones it shows commented out with their default)."""
    active, commented = {}, set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        if match := re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line):
            active[match[1]] = match[2]
        elif match := re.fullmatch(r"#([A-Z][A-Z0-9_]*)=.*", line):
            commented.add(match[1])
    return active, commented


def settings_read_by_the_tool() -> set[str]:
    """Every environment variable the code reads: `env.get("X")`, `os.environ.get("X")`,
    `_int(env, "X", ...)`. (A command's own `envvar`, such as create-admin's ADMIN_PASSWORD,
    is an option of that command, not a setting.)"""
    names = set()
    for path in SETTINGS_SOURCES:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            strings = [a.value for a in node.args
                       if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            func = node.func
            reads_env = (
                isinstance(func, ast.Attribute) and func.attr == "get"
                and ast.unparse(func.value) in ("env", "os.environ")
            ) or any(isinstance(a, ast.Name) and a.id == "env" for a in node.args)
            if reads_env:
                names.update(strings[:1])
    return {n for n in names if re.fullmatch(r"[A-Z][A-Z0-9_]*", n)}


def readme_variables() -> set[str]:
    """Names in the first cell of the README's tables: the documented settings."""
    names = set()
    for line in readme().splitlines():
        if line.startswith("|"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", first_cell))
    return names


def nginx_tree(path: Path) -> list:
    """nginx's configuration as [(directive, [args], children or None)]."""
    text = re.sub(r"#[^\n]*", "", path.read_text())
    tokens = re.findall(r'"[^"]*"|[{};]|[^\s{};"]+', text)
    stack: list[list] = [[]]
    words: list[str] = []
    for token in tokens:
        if token == ";":
            stack[-1].append((words[0], words[1:], None))
            words = []
        elif token == "{":
            block: list = []
            stack[-1].append((words[0], words[1:], block))
            stack.append(block)
            words = []
        elif token == "}":
            assert not words, f"{path.name}: '{' '.join(words)}' lacks its ';'"
            stack.pop()
        else:
            words.append(token.strip('"'))
    assert len(stack) == 1 and not words, f"{path.name}: unbalanced braces"
    return stack[0]


def directives(tree: list, name: str) -> list[tuple]:
    return [d for d in tree if d[0] == name]


def https_server(path: Path) -> list:
    servers = [d[2] for d in directives(nginx_tree(path), "server")
               if any("443" in " ".join(listen[1]) for listen in directives(d[2], "listen"))]
    assert len(servers) == 1, f"{path.name}: expected one server listening on 443"
    return servers[0]


def location(server: list, *args: str) -> list:
    found = [d[2] for d in directives(server, "location") if tuple(d[1]) == args]
    assert found, f"no `location {' '.join(args)}` in the nginx site"
    return found[0]


def value(block: list, name: str) -> list[str]:
    found = directives(block, name)
    assert len(found) == 1, f"expected one `{name}` here, found {len(found)}"
    return found[0][1]


def megabytes(size: str) -> float:
    number, unit_ = re.fullmatch(r"(\d+)([kmg]?)", size.lower()).groups()
    return int(number) * {"": 1 / 2**20, "k": 1 / 1024, "m": 1, "g": 1024}[unit_]


# --- commands ------------------------------------------------------------------------------

# Where the tool's processes are started: the image, compose's services, the units.
COMMAND_SOURCES = ["Dockerfile", *(f"compose.yaml:{name}" for name in TOOL_SERVICES),
                   *(f"deploy/systemd/{path.name}" for path in UNITS)]


def commands_of(source: str) -> list[tuple[str, ...]]:
    if source == "Dockerfile":
        return [dockerfile_cmd()]
    if source.startswith("compose.yaml:"):
        return compose_commands(compose()["services"][source.partition(":")[2]])
    return unit_commands(ROOT / source)


@pytest.mark.parametrize("source", COMMAND_SOURCES)
def test_every_command_in_the_deploy_files_is_the_readmes(source):
    documented = readme_commands()
    for command in commands_of(source):
        assert command in documented, (
            f"{source} runs `{shlex.join(command)}`, which README's Production section does not "
            f"show; it shows: {sorted(shlex.join(c) for c in documented)}"
        )


def test_every_process_in_the_readme_runs_under_systemd_and_in_compose():
    units = {c for p in UNITS for c in unit_commands(p)}
    services = compose()["services"]
    containers = {c for name in TOOL_SERVICES for c in compose_commands(services[name])}
    containers.add(dockerfile_cmd())
    processes = {c for c in readme_commands() if c[0] in ("gunicorn", "celery")}
    assert processes, "README's Production section shows no gunicorn or celery command"
    for command in processes:
        assert command in units, (
            f"README runs `{shlex.join(command)}` but no unit in deploy/systemd/ does")
        assert command in containers, (
            f"README runs `{shlex.join(command)}` but neither compose.yaml nor the Dockerfile does")


def test_the_image_and_the_web_unit_serve_the_same_way():
    web = unit_commands(DEPLOY / "systemd" / "lti-tool-web.service")
    assert web == [dockerfile_cmd()], (
        f"lti-tool-web.service runs {web}, the Dockerfile's CMD {dockerfile_cmd()}")
    assert "command" not in compose()["services"]["tool"], (
        "compose.yaml's tool service overrides the image's command: the two would drift")


def test_one_scheduler_and_workers_without_one():
    units = {p.name: unit_commands(p) for p in UNITS}
    services = compose()["services"]
    for source, commands in [*units.items(), *((n, compose_commands(services[n]))
                                               for n in TOOL_SERVICES)]:
        for command in commands:
            if command[:3] == ("celery", "-A", "wsgi.celery") and "worker" in command:
                assert "-B" not in command and "--beat" not in command, (
                    f"{source} runs the scheduler inside a worker (-B): there must be one "
                    "scheduler per site, its own unit")
    beats = [n for n, cs in units.items() if any("beat" in c for c in cs)]
    assert beats == ["lti-tool-scheduler.service"], f"scheduler units: {beats}"
    beat_services = [n for n in TOOL_SERVICES
                     if any("beat" in c for c in compose_commands(services[n]))]
    assert beat_services == ["scheduler"], f"compose services running beat: {beat_services}"


def test_the_workers_consume_every_queue_and_only_real_ones():
    units = [c for p in UNITS for c in unit_commands(p) if "worker" in c]
    services = compose()["services"]
    containers = [c for n in TOOL_SERVICES for c in compose_commands(services[n])
                  if "worker" in c]
    for where, commands in (("deploy/systemd", units), ("compose.yaml", containers)):
        queues = [c[c.index("-Q") + 1] for c in commands]
        assert sorted(queues) == sorted(jobs.QUEUES), (
            f"{where} has workers for the queues {queues}; the tool's queues are {jobs.QUEUES}")
        long_worker = next(c for c in commands if c[c.index("-Q") + 1] == jobs.LONG)
        assert long_worker[long_worker.index("-c") + 1] == "1", (
            f"{where}: the long queue's worker must run one transcode at a time")


def test_the_schema_is_upgraded_before_the_tool_serves_in_compose():
    services = compose()["services"]
    assert ("flask", "--app", "wsgi", "db", "upgrade") in compose_commands(services["migrate"])
    for name in ("tool", "worker-long", "worker-short", "scheduler"):
        condition = services[name].get("depends_on", {}).get("migrate", {}).get("condition")
        assert condition == "service_completed_successfully", (
            f"compose.yaml: {name} may start before `migrate` has upgraded the schema")
    assert "db upgrade" in production_section(), "README says nothing of `flask db upgrade`"


def test_the_flask_commands_shown_exist(runner):
    services = compose()["services"]
    shown = {c for c in readme_commands() if c[0] == "flask"}
    shown |= {c for n in TOOL_SERVICES for c in compose_commands(services[n]) if c[0] == "flask"}
    assert shown, "README's Production section shows no flask command"
    for command in shown:
        assert command[:3] == ("flask", "--app", "wsgi"), f"`{shlex.join(command)}`: not wsgi"
        result = runner.invoke(args=[*command[3:], "--help"])
        assert result.exit_code == 0, (
            f"`{shlex.join(command)}` is not a command the tool has: {result.output}")


# --- settings ------------------------------------------------------------------------------

# Where the tool's settings are given: env.example, the image, compose's services, the units.
VARIABLE_SOURCES = ["deploy/env.example", "Dockerfile",
                    *(f"compose.yaml:{name}" for name in TOOL_SERVICES),
                    *(f"deploy/systemd/{path.name}" for path in UNITS)]
# The Dockerfile's own ENV for Python and pip.
IMAGE_ONLY = {"PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PIP_NO_CACHE_DIR",
              "PIP_DISABLE_PIP_VERSION_CHECK"}


def variables_of(source: str) -> set[str]:
    if source == "deploy/env.example":
        active, commented = env_example()
        return set(active) | commented
    if source == "Dockerfile":
        return set(dockerfile_env()) - IMAGE_ONLY
    if source.startswith("compose.yaml:"):
        return set(compose()["services"][source.partition(":")[2]].get("environment") or {})
    return set(unit_environment(ROOT / source))


def test_every_variable_in_the_deploy_files_is_a_documented_setting():
    read = settings_read_by_the_tool()
    documented = readme_variables()
    unread, undocumented = {}, {}
    for source in VARIABLE_SOURCES:
        for name in variables_of(source):
            if name not in read:
                unread.setdefault(name, []).append(source)
            if name not in documented:
                undocumented.setdefault(name, []).append(source)
    assert not unread, f"set in the deploy files but never read by the tool (typos?): {unread}"
    assert not undocumented, f"set in the deploy files but in no README table: {undocumented}"


def test_every_setting_the_tool_reads_is_documented_and_in_env_example():
    active, commented = env_example()
    read = settings_read_by_the_tool()
    undocumented = sorted(read - readme_variables())
    assert not undocumented, f"the tool reads {undocumented}, which no README table documents"
    unlisted = sorted(read - set(active) - commented)
    assert not unlisted, f"the tool reads {unlisted}, which deploy/env.example does not list"


def test_compose_interpolations_are_named_in_the_readme():
    text = (ROOT / "compose.yaml").read_text()
    section = production_section()
    for name in sorted(set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))):
        assert f"`{name}`" in section or name in settings_read_by_the_tool(), (
            f"compose.yaml reads {name} from .env, which README's Production section never names")
    for name in sorted(set(re.findall(r"\$\{([A-Z][A-Z0-9_]*):\?", text))):
        assert re.search(rf"^{name}=", section, re.M), (
            f"compose.yaml requires {name} in .env; README's .env example does not show it")


def test_containers_and_hosts_use_the_same_paths():
    active, _ = env_example()
    services = compose()["services"]
    image = dockerfile_env()
    for name in ("MEDIA_ROOT", "INSTANCE_PATH", "MEDIA_ACCEL_REDIRECT", "TRUSTED_PROXIES"):
        assert services["tool"]["environment"][name] == active[name], (
            f"{name}: compose.yaml says {services['tool']['environment'][name]!r}, "
            f"deploy/env.example {active[name]!r}")
    for name in ("MEDIA_ROOT", "INSTANCE_PATH"):
        assert image[name] == active[name], (
            f"{name}: the Dockerfile says {image[name]!r}, deploy/env.example {active[name]!r}")
    assert active["TRUSTED_PROXIES"] == "1", "one nginx in front: TRUSTED_PROXIES=1"
    media = active["MEDIA_ROOT"]
    for name in TOOL_SERVICES:
        if name != "scheduler":
            assert f"media:{media}" in services[name]["volumes"], (
                f"compose.yaml: {name} does not mount the media volume at MEDIA_ROOT ({media})")
    assert f"media:{media}:ro" in services["nginx"]["volumes"], (
        "compose.yaml: nginx does not mount the media volume where its internal location reads")
    for path in UNITS:
        service = unit(path)["Service"]
        assert service["EnvironmentFile"] == ["/etc/lti-tool/env"], path.name
        assert service["User"] == ["lti-tool"], path.name
        assert service["WorkingDirectory"] == [str(Path(media).parent)], (
            f"{path.name}: WorkingDirectory is not the folder the image and nginx's static "
            "location use")
    for name in ("lti-tool-web.service", "lti-tool-worker-long.service",
                 "lti-tool-worker-short.service"):
        assert unit(DEPLOY / "systemd" / name)["Unit"]["RequiresMountsFor"] == [media], (
            f"{name}: RequiresMountsFor is not MEDIA_ROOT ({media})")


# --- nginx ---------------------------------------------------------------------------------

@pytest.mark.parametrize("site", [SITE, COMPOSE_SITE], ids=lambda p: p.name)
def test_nginx_internal_location_is_media_accel_redirect(site):
    active, _ = env_example()
    prefix = active["MEDIA_ACCEL_REDIRECT"]
    assert compose()["services"]["tool"]["environment"]["MEDIA_ACCEL_REDIRECT"] == prefix
    internal = location(https_server(site), prefix)
    assert directives(internal, "internal"), (
        f"{site.name}: location {prefix} is not `internal`: anyone could read every media file")
    assert value(internal, "alias") == [active["MEDIA_ROOT"].rstrip("/") + "/"], (
        f"{site.name}: location {prefix} is not an alias of MEDIA_ROOT ({active['MEDIA_ROOT']})")
    # nginx drops the tool's headers on X-Accel-Redirect: the location sets them again.
    headers = {d[1][0]: d[1][1] for d in directives(internal, "add_header")}
    assert headers.get("Content-Security-Policy") == "sandbox", (
        f"{site.name}: files served through {prefix} lose `Content-Security-Policy: sandbox`")
    assert headers.get("X-Content-Type-Options") == "nosniff", site.name


@pytest.mark.parametrize("site", [SITE, COMPOSE_SITE], ids=lambda p: p.name)
def test_nginx_sends_the_headers_the_tool_trusts(site):
    server = https_server(site)
    sent = {d[1][0].lower(): d[1][1] for d in directives(server, "proxy_set_header")}
    # TRUSTED_PROXIES=1: werkzeug ProxyFix(x_for=1, x_proto=1, x_host=1, x_port=1).
    for header in ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
                   "x-forwarded-port", "host"):
        assert header in sent, f"{site.name} does not set {header}, which ProxyFix reads"
    assert sent["x-forwarded-proto"] == "$scheme", site.name


@pytest.mark.parametrize("site", [SITE, COMPOSE_SITE], ids=lambda p: p.name)
def test_nginx_body_limits_fit_the_uploads(site, tmp_path):
    server = https_server(site)
    part = re.search(r"CHUNK_SIZE = (\d+) \* 1024 \* 1024",
                     (ROOT / "static" / "js" / "upload.js").read_text())
    assert part, "static/js/upload.js no longer says its part size as `N * 1024 * 1024`"
    general = megabytes(value(server, "client_max_body_size")[0])
    assert general > int(part[1]), (
        f"{site.name}: client_max_body_size {general} MB refuses the {part[1]} MiB upload parts")
    whole = from_env(str(tmp_path), {})["MAX_UPLOAD_BYTES"] / 2**20 + 1  # + the form (1 MiB)
    form = megabytes(value(location(server, "=", "/media/upload"), "client_max_body_size")[0])
    assert form >= whole, (
        f"{site.name}: /media/upload accepts {form} MB, the tool {whole} MB (MAX_UPLOAD_MB + 1)")


def test_nginx_upstream_port_is_the_one_gunicorn_binds():
    active, _ = env_example()
    port = active["BIND"].rsplit(":", 1)[1]
    assert dockerfile_env()["BIND"].rsplit(":", 1)[1] == port
    assert compose()["services"]["tool"]["environment"]["BIND"].rsplit(":", 1)[1] == port
    for site in (SITE, COMPOSE_SITE):
        upstream = directives(nginx_tree(site), "upstream")[0][2]
        for server in directives(upstream, "server"):
            assert server[1][0].endswith(f":{port}"), (
                f"{site.name}: upstream {server[1][0]} is not the port gunicorn binds ({port})")


def test_compose_site_is_the_systemd_site_but_for_its_upstream():
    def comparable(tree: list) -> list:
        kept = []
        for name, args, children in tree:
            if name in ("resolver", "upstream") or (name == "listen" and args[0].startswith("[")):
                continue  # Docker's DNS, the compose services, no IPv6 in a default network
            kept.append((name, args, comparable(children) if children is not None else None))
        return kept

    assert comparable(nginx_tree(COMPOSE_SITE)) == comparable(nginx_tree(SITE)), (
        "deploy/nginx/compose.conf differs from deploy/nginx/lti-tool.conf beyond the upstream: "
        "change both")
    static = value(location(https_server(SITE), "/static/"), "alias")[0]
    assert (ROOT / "static" / "js" / "upload.js").is_file() and static.endswith("/static/")
    assert "./static:" + static.rstrip("/") + ":ro" in compose()["services"]["nginx"]["volumes"]


def test_nginx_accepts_the_site(tmp_path):
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                      else None)
    if nginx is None:
        pytest.skip("nginx is not installed (make test installs it as root)")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "media.example.edu")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    site = SITE.read_text()
    for placeholder, generated in (("/etc/ssl/lti-tool/fullchain.pem", "cert.pem"),
                                   ("/etc/ssl/lti-tool/privkey.pem", "key.pem")):
        assert placeholder in site, f"the nginx site no longer names {placeholder}"
        site = site.replace(placeholder, str(tmp_path / generated))
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "logs").mkdir()
    temp = " ".join(f"{kind}_temp_path {tmp_path / kind};"
                    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path / 'nginx.pid'};\nerror_log stderr;\nevents {{}}\n"
        f"http {{ include /etc/nginx/mime.types; access_log off; {temp}\n"
        f"include {tmp_path / 'site.conf'}; }}\n")
    result = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"nginx -t refuses deploy/nginx/lti-tool.conf:\n{result.stderr}"
