"""Reads template.yaml so the embedded stack builds exactly the resources the template declares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "template.yaml"


@dataclass(frozen=True)
class Intrinsic:
    """A CloudFormation intrinsic function (``!Ref X`` becomes ``Intrinsic("Ref", "X")``)."""

    name: str
    value: Any


class _TemplateLoader(yaml.SafeLoader):
    pass


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Intrinsic:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    name = tag_suffix if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    return Intrinsic(name, value)


_TemplateLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        document: dict[str, Any] = yaml.load(handle, Loader=_TemplateLoader)  # noqa: S506 - SafeLoader subclass
    return document


def condition_holds(template: dict[str, Any], name: str, resolve: Callable[[Any], str]) -> bool:
    """A named condition of the template (Fn::Equals, Fn::Not, Fn::And, Fn::Or, Condition); ``resolve`` gives
    the value of an operand of Fn::Equals (a parameter's ``!Ref``, say)."""

    def holds(expression: Any) -> bool:
        if not isinstance(expression, Intrinsic):
            raise ValueError(f"condition {name}: {expression!r} is not an intrinsic")
        if expression.name == "Fn::Equals":
            left, right = expression.value
            return resolve(left) == resolve(right)
        if expression.name == "Fn::Not":
            return not holds(expression.value[0])
        if expression.name == "Fn::And":
            return all(holds(part) for part in expression.value)
        if expression.name == "Fn::Or":
            return any(holds(part) for part in expression.value)
        if expression.name in ("Condition", "Fn::Condition"):
            return condition_holds(template, expression.value, resolve)
        raise ValueError(f"condition {name}: {expression.name} is not modelled")

    return holds(template["Conditions"][name])


def resources_of_type(
    template: dict[str, Any], resource_type: str, holds: Callable[[str], bool] | None = None
) -> dict[str, dict[str, Any]]:
    """The resources of one type; with ``holds`` (a named condition -> bool), only those CloudFormation would
    create (a resource with a ``Condition`` that does not hold is left out)."""
    return {
        logical_id: resource.get("Properties", {})
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
        and (holds is None or "Condition" not in resource or holds(resource["Condition"]))
    }


def own_environment(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    """A function's own environment variables (besides Globals), intrinsics unresolved."""
    properties = template["Resources"][logical_id].get("Properties", {})
    variables: dict[str, Any] = properties.get("Environment", {}).get("Variables", {})
    return variables


def queue_event_sources(template: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each SQS-triggered function (by its folder under ``functions/``): its queue's logical id and the event
    source's properties (BatchSize, ...)."""
    sources: dict[str, tuple[str, dict[str, Any]]] = {}
    for props in resources_of_type(template, "AWS::Serverless::Function").values():
        for event in props.get("Events", {}).values():
            if event.get("Type") == "SQS":
                queue = event["Properties"]["Queue"]
                target = queue.value if isinstance(queue, Intrinsic) else str(queue)
                logical_id = target.split(".")[0] if isinstance(target, str) else target[0]
                folder = str(props["CodeUri"]).rstrip("/").rsplit("/", 1)[-1]
                sources[folder] = (logical_id, event["Properties"])
    return sources


def function_environment(template: dict[str, Any]) -> dict[str, Any]:
    """The environment variables every function gets (Globals), intrinsics unresolved."""
    variables: dict[str, Any] = template["Globals"]["Function"]["Environment"]["Variables"]
    return variables


def function_timeouts(template: dict[str, Any]) -> dict[str, float]:
    """Each function's timeout in seconds, by its folder under ``functions/`` (Globals fill the gaps)."""
    default = float(template["Globals"]["Function"].get("Timeout", 3))
    return {
        str(props["CodeUri"]).rstrip("/").rsplit("/", 1)[-1]: float(props.get("Timeout", default))
        for props in resources_of_type(template, "AWS::Serverless::Function").values()
    }


def function_schedules(template: dict[str, Any]) -> dict[str, str]:
    """Each scheduled function's ``ScheduleExpression`` (by its folder under ``functions/``)."""
    schedules: dict[str, str] = {}
    for props in resources_of_type(template, "AWS::Serverless::Function").values():
        for event in props.get("Events", {}).values():
            if event.get("Type") in ("Schedule", "ScheduleV2"):
                folder = str(props["CodeUri"]).rstrip("/").rsplit("/", 1)[-1]
                schedules[folder] = str(event["Properties"]["ScheduleExpression"])
    return schedules
