"""Benchmark: cold start (import + init of each function) and deployment artifact sizes.

Each function's ``functions/<name>/app.py`` is imported in a fresh interpreter (subprocess), the median of
``--runs`` is reported: the import + init time measured inside the child (what Lambda's Init phase spends on
our code) and the child's whole wall time (interpreter start included). The environment is complete and
valid (so the cold-start configuration checks pass) but points at nothing real: AWS_ENDPOINT_URL is a closed
loopback port, so any network call at import would fail the run.

Init is measured as deployed by default (``TraceSubsegments=false``: no X-Ray SDK) and again with X-Ray
subsegments on. Artifact sizes come from ``sam build`` output (``.aws-sam/build`` or ``--build-dir``) when it
exists; else each function's code zipped plus the layer built by ``shared/Makefile`` as ``sam build`` runs it
(arm64 wheels, without the boto3/botocore Lambda's Python runtime ships).

    make bench-coldstart
    python -m bench.coldstart --runs 5 --build-dir .aws-sam/build
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.common import write_result
from local.template import Intrinsic, function_environment, load_template

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ("check_scheduler", "check_worker", "escalator", "api")
INIT_TARGET_MS = 400
ARTIFACT_TARGET_MB = 15

_CHILD = """
import time, sys, importlib.util
started = time.perf_counter()
spec = importlib.util.spec_from_file_location("lambda_app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
assert callable(module.handler)
print(round((time.perf_counter() - started) * 1000, 1))
"""


def cold_environment() -> dict[str, str]:
    """The functions' Globals environment with every reference replaced by a plausible value."""
    fake = {
        "ConnectionsTable": "qbo-health-connections",
        "HistoryTable": "qbo-health-history",
        "ControlTable": "qbo-health-control",
        "OAuthStatesTable": "qbo-health-oauth-states",
        "CheckQueue": "https://sqs.us-east-1.amazonaws.com/123456789012/qbo-health-checks",
        "TokenKey": "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
        "EventBus": "qbo-health-events",
    }
    environment: dict[str, str] = {}
    template = load_template()
    for name, value in function_environment(template).items():
        if isinstance(value, Intrinsic):
            ref = value.value if isinstance(value.value, str) else str(value.value)
            ref = ref.split(".", 1)[0]
            if ref in fake:
                environment[name] = fake[ref]
            elif ref in template.get("Parameters", {}):
                default = template["Parameters"][ref].get("Default", "")
                environment[name] = str(default) if default != "" else f"placeholder-{ref.lower()}"
            else:
                environment[name] = f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{ref}"
        else:
            environment[name] = str(value)
    environment.update(
        {
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "cold",
            "AWS_SECRET_ACCESS_KEY": "cold",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # closed: a network call at import fails the run
            "AWS_LAMBDA_FUNCTION_NAME": "cold-start-bench",
            "INTUIT_ENVIRONMENT": "sandbox",
            "INTUIT_CLIENT_ID": "cold-client-id",
            "INTUIT_CLIENT_SECRET": "cold-client-secret",
            "SENDER_EMAIL": "notices@example.com",
            "PUBLIC_BASE_URL": "https://connect.example.com",
            "LINK_SIGNING_KEY": "cold-start-link-signing-key-0123456789abcdef",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "PATH": os.environ.get("PATH", ""),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    return environment


def build_layer(target: Path, arch: str) -> Path:
    """The layer as ``sam build`` makes it (shared/Makefile), for ``arch``; returns its ``python/`` folder."""
    subprocess.run(  # noqa: S603
        [
            shutil.which("make") or "make",
            "-s",
            "-C",
            str(ROOT / "shared"),
            "build-SharedLayer",
            f"ARTIFACTS_DIR={target}",
        ],
        env={**os.environ, "PYTHON": sys.executable, "LAYER_ARCH": arch},
        check=True,
        timeout=600,
    )
    return target / "python"


def install_runtime_sdk(target: Path) -> Path:
    """A stand-in for Lambda's /var/runtime: the boto3 the Python runtime ships (the layer leaves it out)."""
    subprocess.run(  # noqa: S603
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
            str(target),
            "-r",
            str(ROOT / "tools" / "requirements-lambda-runtime.txt"),
        ],
        check=True,
        timeout=600,
    )
    return target


def measure_once(function: str, environment: dict[str, str], paths: list[Path]) -> tuple[float, float]:
    """One fresh ``python -S`` interpreter (no site-packages) whose path is Lambda's: the function's folder,
    the layer, the runtime's SDK; nothing is compiled or written on the way (the layer carries its bytecode).
    Returns (import + init ms measured inside, process wall ms)."""
    app = ROOT / "functions" / function / "app.py"
    env = {**environment, "PYTHONPATH": os.pathsep.join(str(path) for path in [app.parent, *paths])}
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-S", "-c", _CHILD, str(app)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tempfile.gettempdir(),
    )
    wall = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"{function} failed its cold start:\n{done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1]), wall


def summary(samples: list[tuple[float, float]]) -> dict[str, Any]:
    inside = [sample[0] for sample in samples]
    return {
        "import_init_ms_median": round(statistics.median(inside), 1),
        "import_init_ms_all": inside,
        "process_wall_ms_median": round(statistics.median(sample[1] for sample in samples), 1),
        "meets_target": statistics.median(inside) < INIT_TARGET_MS,
    }


def _dir_sizes(path: Path, skip: tuple[str, ...] = ()) -> tuple[int, int]:
    """(unzipped bytes, zipped bytes) of a directory, as a deployment zip would hold it."""
    buffer = io.BytesIO()
    raw = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(path.rglob("*")):
            relative = file.relative_to(path)
            if not file.is_file() or "__pycache__" in relative.parts:
                continue
            if relative.parts and any(relative.parts[0].lower().startswith(s) for s in skip):
                continue
            raw += file.stat().st_size
            archive.write(file, relative)
    return raw, len(buffer.getvalue())


def _mb(size: int) -> float:
    return round(size / 1024 / 1024, 2)


def artifact_sizes(build_dir: Path | None) -> dict[str, Any]:
    candidates = [build_dir] if build_dir else [ROOT / ".aws-sam" / "build"]
    found = next((c for c in candidates if c is not None and c.is_dir()), None)
    if found is not None:
        sizes = {}
        for artifact in sorted(p for p in found.iterdir() if p.is_dir()):
            raw, zipped = _dir_sizes(artifact)
            sizes[artifact.name] = {"unzipped_mb": _mb(raw), "zipped_mb": _mb(zipped)}
        return {"source": f"sam build output at {found}", "artifacts": sizes}

    with tempfile.TemporaryDirectory() as tmp:
        build_layer(Path(tmp), "arm64")
        layer = _dir_sizes(Path(tmp))
        functions = {}
        for function in FUNCTIONS:
            raw, zipped = _dir_sizes(ROOT / "functions" / function)
            functions[function] = {"unzipped_kb": round(raw / 1024, 1), "zipped_kb": round(zipped / 1024, 1)}
    return {
        "source": "no sam build output found: function dirs zipped here, the layer built by shared/Makefile "
        "(arm64 wheels, without the boto3/botocore the runtime ships)",
        "functions": functions,
        "layer": {"unzipped_mb": _mb(layer[0]), "zipped_mb": _mb(layer[1])},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--build-dir", type=Path, default=None)
    args = parser.parse_args()

    environment = cold_environment()
    host_arch = {"aarch64": "arm64", "arm64": "arm64"}.get(os.uname().machine, "x86_64")
    with tempfile.TemporaryDirectory() as tmp:
        paths = [build_layer(Path(tmp) / "layer", host_arch), install_runtime_sdk(Path(tmp) / "runtime")]
        # As deployed (no X-Ray SDK), and with TraceSubsegments=true (the Powertools Tracer loads the X-Ray SDK
        # and patches botocore and requests). Runs are interleaved, so a slow spell of a shared machine lands on
        # every function and variant alike.
        variants = {
            "as_deployed": environment,
            "trace_subsegments": {
                **environment,
                "POWERTOOLS_TRACE_DISABLED": "false",
                "LAMBDA_TASK_ROOT": tmp,
            },
        }
        samples: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
        for _ in range(args.runs):
            for function in FUNCTIONS:
                for variant, env in variants.items():
                    samples[function, variant].append(measure_once(function, env, paths))
    inits = {function: summary(samples[function, "as_deployed"]) for function in FUNCTIONS}
    traced = {function: summary(samples[function, "trace_subsegments"]) for function in FUNCTIONS}
    for function in FUNCTIONS:
        print(
            f"{function:<16} import+init {inits[function]['import_init_ms_median']:>6.0f} ms (median of {args.runs}), "
            f"process {inits[function]['process_wall_ms_median']:>6.0f} ms (target < {INIT_TARGET_MS} ms); "
            f"with X-Ray subsegments {traced[function]['import_init_ms_median']:>6.0f} ms"
        )
    sizes = artifact_sizes(args.build_dir)
    print(f"artifacts ({sizes['source']}):")
    print(json.dumps({k: v for k, v in sizes.items() if k != "source"}, indent=1))
    path = write_result(
        "coldstart",
        {
            "runs": args.runs,
            "init": inits,
            "init_with_trace_subsegments": traced,
            "init_target_ms": INIT_TARGET_MS,
            "artifact_target_mb": ARTIFACT_TARGET_MB,
            "artifacts": sizes,
        },
    )
    print(f"written to {path}")


if __name__ == "__main__":
    main()
