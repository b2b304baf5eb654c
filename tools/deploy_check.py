"""`sam build` into a temporary folder, then every handler imported from the build output in a clean interpreter.

What it proves, with no AWS credentials and no Docker:

1. ``sam build`` of the real template succeeds for the template's architecture (arm64): the layer's
   requirements resolve to arm64 wheels (SAM runs ``pip download --platform``), and every native extension in
   the layer really is an aarch64 ELF object.
2. Each function's handler imports from the build output alone, in a fresh interpreter (``python -S``: no
   site-packages, so nothing from the repository's virtualenv can stand in for a missing layer package),
   with ``PYTHONPATH`` = the built function folder + the built layer's ``python/`` folder + a stand-in for
   the runtime's boto3 (tools/requirements-lambda-runtime.txt), as Lambda lays them out (/var/task, then
   /opt/python, then /var/runtime). The layer leaves boto3 and botocore out: the runtime ships them. arm64 extensions do not load on an x86_64 machine, so there the import
   runs against a second build of a temporary copy of the template whose only change is the architecture;
   the real template is never touched.
3. The environment of each function is the template's own (Globals plus the function's variables), its
   intrinsics resolved to realistic physical ids, and its parameters from samconfig.toml's environments
   (dev and prod): every settings model the functions read at cold start validates against it. Then the
   inline credentials that take precedence over the Secrets Manager secrets are added (so the cold start does
   not need AWS) and ``app.handler`` is imported; any other AWS call at import time would hit a closed
   loopback port and fail fast. Last, a notice is rendered in each language: the e-mail templates, the compiled
   catalogues (package data of the layer) and Babel's locale data for them are in the build output; and the
   QBO tile's script is read from it.

Usage (the Makefile's ``deploy-build`` target): ``python tools/deploy_check.py --sam .venv-sam/bin/sam``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "shared")]

from local.template import Intrinsic, load_template  # noqa: E402 - after the path set-up
from local.template import condition_holds as template_condition_holds  # noqa: E402

TEMPLATE = ROOT / "template.yaml"
SAMCONFIG = ROOT / "samconfig.toml"
RUNTIME_SDK = ROOT / "tools" / "requirements-lambda-runtime.txt"
CACHE = ROOT / ".aws-sam" / "check-cache"
REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK = "qbo-health-check"
PSEUDO = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::StackName": STACK,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::NoValue": "",
}
# Values `sam deploy --guided` asks for (parameters without a default), as a user would answer.
GUIDED_ANSWERS = {
    "SenderEmail": "notices@example.com",
    "PublicBaseUrl": "https://connect.example.com",
}
# A function the template deploys only under a condition (the webhook delivery function, with WebhookUrl set)
# is checked as deployed: these values make its condition hold.
CONDITIONAL_ANSWERS = {"WebhookUrl": "https://hooks.example.com/qbo-health"}
# On AWS the functions read these from Secrets Manager at cold start; inline values take precedence, so the
# import needs no AWS. The settings are validated without them first (see IMPORT_PROBE).
INLINE_SECRETS = {
    "INTUIT_CLIENT_ID": "deploy-check-client-id",
    "INTUIT_CLIENT_SECRET": "deploy-check-client-secret",
    "LINK_SIGNING_KEY": "deploy-check-link-signing-key-0123456789abcdef",
}
ELF_MACHINES = {183: "arm64", 62: "x86_64"}
HOST_ARCH = {"aarch64": "arm64", "arm64": "arm64", "x86_64": "x86_64", "amd64": "x86_64"}.get(
    platform.machine().lower(), platform.machine()
)

# Runs in the clean interpreter: settings from the template's environment, then the handler's import.
IMPORT_PROBE = r"""
import importlib, json, os, sys, sysconfig
from qbo_health import config

models = sorted(
    {value for value in vars(config).values()
     if isinstance(value, type) and issubclass(value, config._EnvModel) and value is not config._EnvModel},
    key=lambda model: model.__name__,
)
problems = []
for config_env, environ in json.loads(os.environ.pop("DEPLOY_CHECK_ENVIRONMENTS")).items():
    for model in models:
        try:
            model.from_env(environ)
        except Exception as error:
            problems.append(f"[{config_env}] {model.__name__}: {error}")
if problems:
    sys.exit("the template's environment fails cold-start validation: " + "; ".join(problems))

os.environ.update(json.loads(os.environ.pop("DEPLOY_CHECK_INLINE")))
module_name, attribute = os.environ.pop("DEPLOY_CHECK_HANDLER").rsplit(".", 1)
module = importlib.import_module(module_name)
handler = getattr(module, attribute)
if not callable(handler):
    sys.exit(f"{module_name}.{attribute} is not callable")

# The notices' templates and catalogues are package data of the layer: render one in a translated language.
from datetime import datetime, timezone
from qbo_health.domain.model import IssueType
from qbo_health.domain.notices import Notice, NoticeKind, render_email
for locale, greeting in (("fr-CA", "Bonjour"), ("es", "Hola"), ("en-GB", "Hello"), ("en-AU", "Hello"), ("en-US", "Hello")):
    notice = Notice(NoticeKind.NOTICE, "c", "t", "e", datetime.now(timezone.utc), issue=IssueType.ADMIN_ACCESS_LOST,
                    reconnect_url="https://connect.example.com/reconnect/x", locale=locale)
    email = render_email(notice)
    if greeting not in email.text or 'class="button"' not in email.html:
        sys.exit(f"the notice templates or the {locale} catalogue are missing from the build output")

# The QBO tile's script is package data of the layer too (served by GET /tile/v1/qbo-connection-tile.js).
from qbo_health.api.tile import script_bytes
if b"qbo-connection-tile" not in script_bytes():
    sys.exit("the QBO tile's script is missing from the build output")

allowed = [os.path.realpath(p) for p in os.environ["PYTHONPATH"].split(os.pathsep)]
allowed += [os.path.realpath(sysconfig.get_paths()[key]) for key in ("stdlib", "platstdlib")]
outside = sorted(
    name for name, loaded in list(sys.modules.items())
    if getattr(loaded, "__file__", None)
    and not any(os.path.realpath(loaded.__file__).startswith(root + os.sep) for root in allowed)
)
if outside:
    sys.exit(f"modules loaded from outside the build output: {outside}")
print(json.dumps({"handler": module.__file__, "modules": len(sys.modules)}))
"""


class CheckError(Exception):
    pass


# ---------------------------------------------------------------------------------------------- parameters


def samconfig_parameters(config_env: str) -> dict[str, str]:
    """``parameter_overrides`` of one samconfig.toml environment (deploy section, else global)."""
    if not SAMCONFIG.exists():
        return {}
    document = tomllib.loads(SAMCONFIG.read_text(encoding="utf-8"))
    section = document.get(config_env, {})
    raw: Any = None
    for command in ("deploy", "global"):
        raw = section.get(command, {}).get("parameters", {}).get("parameter_overrides")
        if raw is not None:
            break
    items = shlex.split(raw) if isinstance(raw, str) else list(raw or [])
    return dict(item.split("=", 1) for item in items)


def parameter_values(template: dict[str, Any], config_env: str) -> dict[str, str]:
    """Each parameter's value as a deploy with ``--config-env`` would have it, checked like CloudFormation."""
    overrides = samconfig_parameters(config_env)
    unknown = set(overrides) - set(template.get("Parameters", {}))
    if unknown:
        raise CheckError(f"samconfig.toml [{config_env}] overrides unknown parameters: {sorted(unknown)}")
    values: dict[str, str] = {}
    for name, spec in template.get("Parameters", {}).items():
        if name in overrides:
            value = overrides[name]
        elif "Default" in spec:
            value = str(spec["Default"])
        elif name in GUIDED_ANSWERS:
            value = GUIDED_ANSWERS[name]
        else:
            raise CheckError(
                f"parameter {name} has no default: add an example answer to GUIDED_ANSWERS in "
                "tools/deploy_check.py (and document it in the README: `sam deploy --guided` asks for it)"
            )
        allowed = spec.get("AllowedValues")
        if allowed is not None and value not in [str(v) for v in allowed]:
            raise CheckError(f"[{config_env}] {name}={value!r} is not one of {allowed}")
        pattern = spec.get("AllowedPattern")
        if pattern is not None and not re.fullmatch(pattern, value):
            raise CheckError(f"[{config_env}] {name}={value!r} does not match {pattern!r}")
        values[name] = value
    return values


# ---------------------------------------------------------------------------------------------- intrinsics


def _service(resource_type: str) -> str:
    return resource_type.split("::")[1].lower()


def physical_ref(logical_id: str, resource_type: str) -> str:
    """What ``!Ref`` returns for a resource of this type, in the shape CloudFormation returns it."""
    name = f"{STACK}-{logical_id}"
    if resource_type == "AWS::SQS::Queue":
        return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
    if resource_type == "AWS::KMS::Key":
        return "1234abcd-12ab-34cd-56ef-1234567890ab"
    if resource_type == "AWS::SecretsManager::Secret":
        return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf"
    if resource_type == "AWS::SNS::Topic":
        return f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}"
    return name


def physical_attribute(logical_id: str, resource_type: str, attribute: str) -> str:
    name = f"{STACK}-{logical_id}"
    if attribute in ("QueueName", "Name"):
        return name
    if attribute == "Arn":
        return f"arn:aws:{_service(resource_type)}:{REGION}:{ACCOUNT}:{name}"
    return f"{name}.{attribute}"


def resolve(value: Any, template: dict[str, Any], parameters: dict[str, str]) -> str:
    if not isinstance(value, Intrinsic):
        return str(value).lower() if isinstance(value, bool) else str(value)
    resources = template["Resources"]

    def ref(name: str) -> str:
        if name in resources:
            return physical_ref(name, resources[name]["Type"])
        if name in parameters:
            return parameters[name]
        if name in PSEUDO:
            return PSEUDO[name]
        raise CheckError(f"!Ref {name}: no such resource or parameter")

    if value.name == "Ref":
        return ref(value.value)
    if value.name == "Fn::GetAtt":
        logical_id, attribute = value.value.split(".", 1) if isinstance(value.value, str) else value.value
        return physical_attribute(logical_id, resources[logical_id]["Type"], attribute)
    if value.name == "Fn::Sub":
        text, variables = (value.value, {}) if isinstance(value.value, str) else value.value

        def substitute(match: re.Match[str]) -> str:
            token = match.group(1)
            if token in variables:
                return resolve(variables[token], template, parameters)
            if "." in token and token.split(".", 1)[0] in resources:
                logical_id, attribute = token.split(".", 1)
                return physical_attribute(logical_id, resources[logical_id]["Type"], attribute)
            return ref(token)

        return re.sub(r"\$\{([^}!]+)\}", substitute, text)
    if value.name == "Fn::If":
        condition, when_true, when_false = value.value
        chosen = when_true if condition_holds(condition, template, parameters) else when_false
        return resolve(chosen, template, parameters)
    raise CheckError(f"the deploy check cannot resolve {value.name} (extend tools/deploy_check.py)")


def condition_holds(name: str, template: dict[str, Any], parameters: dict[str, str]) -> bool:
    """A named condition of the template, with these parameters (local.template evaluates it)."""
    try:
        return template_condition_holds(
            template, name, lambda operand: resolve(operand, template, parameters)
        )
    except ValueError as error:
        raise CheckError(str(error)) from None


def function_environment(
    template: dict[str, Any], logical_id: str, parameters: dict[str, str]
) -> dict[str, str]:
    """A function's environment variables as Lambda would set them: Globals, then the function's own."""
    variables: dict[str, Any] = {}
    globals_env = template.get("Globals", {}).get("Function", {}).get("Environment", {})
    variables.update(globals_env.get("Variables", {}))
    own = template["Resources"][logical_id].get("Properties", {}).get("Environment", {})
    variables.update(own.get("Variables", {}))
    return {name: resolve(value, template, parameters) for name, value in variables.items()}


# ---------------------------------------------------------------------------------------------- build


def functions_of(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource.get("Properties", {})
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def layer_ids(template: dict[str, Any], properties: dict[str, Any]) -> list[str]:
    layers = list(template.get("Globals", {}).get("Function", {}).get("Layers", []))
    layers += properties.get("Layers", [])
    ids = []
    for layer in layers:
        if not (isinstance(layer, Intrinsic) and layer.name == "Ref"):
            raise CheckError(f"layer {layer!r} is not a layer of this template; the check cannot import it")
        ids.append(layer.value)
    return ids


def template_architecture(template: dict[str, Any]) -> str:
    architectures = {
        arch
        for properties in functions_of(template).values()
        for arch in properties.get(
            "Architectures", template.get("Globals", {}).get("Function", {}).get("Architectures", ["x86_64"])
        )
    }
    if len(architectures) != 1:
        raise CheckError(f"expected one architecture for every function, found {sorted(architectures)}")
    return architectures.pop()


def host_template_copy(source: Path, target: Path, architecture: str) -> None:
    """The template with only the architecture changed, code paths made absolute so it builds from /tmp."""
    text = source.read_text(encoding="utf-8")
    text, paths = re.subn(
        r"^(\s+(?:CodeUri|ContentUri):\s+)(\S+)$",
        lambda match: f"{match.group(1)}{(source.parent / match.group(2)).resolve()}/",
        text,
        flags=re.MULTILINE,
    )
    text, archs = re.subn(
        r"^(\s+(?:Architectures|CompatibleArchitectures):\s+)\[arm64\]$|^(\s+BuildArchitecture:\s+)arm64$",
        lambda match: (
            f"{match.group(1)}[{architecture}]" if match.group(1) else f"{match.group(2)}{architecture}"
        ),
        text,
        flags=re.MULTILINE,
    )
    if not paths or not archs:
        raise CheckError("could not make the host-architecture copy of the template (its layout changed?)")
    target.write_text(text, encoding="utf-8")


def sam_build(sam: str, template: Path, work: Path, arch: str) -> tuple[Path, float]:
    """``sam build --cached`` into ``work/<arch>/build``; the cache persists in .aws-sam/check-cache/<arch>.

    SAM keeps its cache index (build.toml) beside the build folder and the layer's installed dependencies in
    ``.aws-sam/deps`` under the working directory, and deletes the dependency folders its index does not
    name: so each architecture builds from its own cache folder, and the index is carried in and out of the
    temporary build folder.
    """
    state = CACHE / arch
    state.mkdir(parents=True, exist_ok=True)
    (work / arch).mkdir(parents=True)
    build_dir = work / arch / "build"
    if (state / "build.toml").exists():
        shutil.copy2(state / "build.toml", work / arch / "build.toml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") or k == "AWS_CA_BUNDLE"}
    env.update(
        LAYER_ARCH=arch,  # shared/Makefile builds the layer for this architecture
        PYTHON=sys.executable,  # a Python 3.11 with pip, for the layer's install
        SAM_CLI_TELEMETRY="0",
        AWS_EC2_METADATA_DISABLED="true",  # no credentials, and no probing the instance metadata service
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_CONFIG_FILE=os.devnull,
    )
    command = [
        sam, "build", "--template-file", str(template), "--build-dir", str(build_dir),
        "--cached", "--cache-dir", str(state / "cache"), "--region", REGION,
    ]  # fmt: skip
    started = time.monotonic()
    result = subprocess.run(command, cwd=state, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        (state / "build.toml").unlink(missing_ok=True)
        raise CheckError(f"sam build failed ({template}):\n{result.stdout}\n{result.stderr}")
    if (work / arch / "build.toml").exists():
        shutil.copy2(work / arch / "build.toml", state / "build.toml")
    return build_dir, time.monotonic() - started


def elf_architecture(path: Path) -> str | None:
    with path.open("rb") as handle:
        header = handle.read(20)
    if header[:4] != b"\x7fELF":
        return None
    return ELF_MACHINES.get(int.from_bytes(header[18:20], "little"), f"machine {header[18]}")


def check_native_architecture(build_dir: Path, expected: str) -> int:
    objects = [path for path in build_dir.rglob("*.so*") if path.is_file()]
    wrong = {
        str(path.relative_to(build_dir)): arch
        for path in objects
        if (arch := elf_architecture(path)) is not None and arch != expected
    }
    if wrong:
        raise CheckError(f"native objects not built for {expected}: {wrong}")
    return len(objects)


def runtime_sdk() -> Path:
    """A folder standing in for Lambda's /var/runtime: the boto3 the Python runtime ships, installed once."""
    target = CACHE / "runtime-sdk"
    stamp = target / ".installed"
    wanted = RUNTIME_SDK.read_text(encoding="utf-8")
    if not stamp.exists() or stamp.read_text(encoding="utf-8") != wanted:
        shutil.rmtree(target, ignore_errors=True)
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        command += ["--target", str(target), "-r", str(RUNTIME_SDK)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        if result.returncode != 0:
            raise CheckError(f"could not install the runtime's SDK stand-in:\n{result.stderr}")
        stamp.write_text(wanted, encoding="utf-8")
    return target


def import_handlers(template: dict[str, Any], build_dir: Path, config_envs: list[str]) -> list[str]:
    """One clean interpreter per function: its settings validated under every samconfig environment, then
    its handler imported under the last one (usually prod)."""
    parameters = {config_env: parameter_values(template, config_env) for config_env in config_envs}
    runtime = runtime_sdk()
    results = []
    for logical_id, properties in functions_of(template).items():
        code_dir = build_dir / logical_id
        layers = [build_dir / layer / "python" for layer in layer_ids(template, properties)]
        for folder in (code_dir, *layers):
            if not folder.is_dir():
                raise CheckError(f"{logical_id}: {folder} is missing from the build output")
        lambda_env = {
            # What Lambda sets; the credentials are dummies and every AWS endpoint a closed loopback port.
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{properties.get('Runtime', 'python3.11')}",
            "AWS_LAMBDA_FUNCTION_NAME": f"{STACK}-{logical_id}",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            "AWS_ACCESS_KEY_ID": "deploy-check",
            "AWS_SECRET_ACCESS_KEY": "deploy-check",
            "AWS_SESSION_TOKEN": "deploy-check",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            "LAMBDA_TASK_ROOT": str(code_dir),
        }
        conditional = "Condition" in template["Resources"][logical_id]
        environments = {
            config_env: {
                **lambda_env,
                **function_environment(
                    template, logical_id, {**values, **CONDITIONAL_ANSWERS} if conditional else values
                ),
            }
            for config_env, values in parameters.items()
        }
        env = {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            # Lambda's order: the function (/var/task), its layers (/opt/python), then the runtime's own.
            "PYTHONPATH": os.pathsep.join(str(path) for path in (code_dir, *layers, runtime)),
            "PYTHONDONTWRITEBYTECODE": "1",
            **environments[config_envs[-1]],
            "DEPLOY_CHECK_ENVIRONMENTS": json.dumps(environments),
            "DEPLOY_CHECK_HANDLER": properties["Handler"],
            "DEPLOY_CHECK_INLINE": json.dumps(INLINE_SECRETS),
        }
        result = subprocess.run(  # noqa: S603 - our own interpreter and probe
            [sys.executable, "-S", "-c", IMPORT_PROBE],
            cwd=code_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise CheckError(
                f"{logical_id}: {properties['Handler']} does not import from the build output:\n"
                f"{result.stdout}{result.stderr}"
            )
        results.append(
            f"{logical_id}: settings valid under {', '.join(config_envs)}; {properties['Handler']} imports "
            "from the build output alone"
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sam", default=str(ROOT / ".venv-sam" / "bin" / "sam"))
    parser.add_argument(
        "--config-env", action="append", help="samconfig.toml environments (default dev, prod)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary build folder")
    args = parser.parse_args()
    if sys.version_info[:2] != (3, 11):
        print("deploy check: the functions run python3.11; run this with a 3.11 interpreter", file=sys.stderr)
        return 2
    template = load_template(TEMPLATE)
    arch = template_architecture(template)
    work = Path(tempfile.mkdtemp(prefix="qbo-sam-build-"))
    try:
        build_dir, seconds = sam_build(str(Path(args.sam).absolute()), TEMPLATE, work, arch)
        count = check_native_architecture(build_dir, arch)
        print(
            f"sam build ({arch}, the template as deployed): {seconds:.0f} s, {count} native objects, all {arch}"
        )
        import_dir = build_dir
        if arch != HOST_ARCH:
            copy = CACHE / HOST_ARCH / "template.yaml"
            copy.parent.mkdir(parents=True, exist_ok=True)
            host_template_copy(TEMPLATE, copy, HOST_ARCH)
            import_dir, seconds = sam_build(str(Path(args.sam).absolute()), copy, work, HOST_ARCH)
            check_native_architecture(import_dir, HOST_ARCH)
            print(
                f"sam build ({HOST_ARCH} copy of the template for the import: {arch} extensions do not load "
                f"on this {HOST_ARCH} machine): {seconds:.0f} s"
            )
        for line in import_handlers(template, import_dir, args.config_env or ["dev", "prod"]):
            print(line)
    except CheckError as error:
        print(f"deploy check failed: {error}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"build output kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
