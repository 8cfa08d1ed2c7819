"""MLflow's prompt registry: the templates of `configs/prompts/` registered by content, aliases moved by promotions,
and `name@alias` resolved back into a template whose text is checked against its recorded sha256."""

from __future__ import annotations

from typing import Any

from reasonloop.errors import PromptError
from reasonloop.reasoning.prompts import PLACEHOLDER, PromptTemplate
from reasonloop.redact import redact


def register_prompt(prompt: PromptTemplate) -> Any:
    """The registry version holding this exact text: an existing one with its sha256 (also an older version an
    alias points back to), else a new one."""
    import mlflow

    same = [v for v in registry_versions(prompt.name) if v.tags.get("sha256") == prompt.sha256]
    if same:
        return same[-1]
    return mlflow.genai.register_prompt(
        name=prompt.name,
        template=[{"role": "system", "content": prompt.system}, {"role": "user", "content": prompt.template}],
        commit_message=f"{prompt.ref} ({prompt.sha256[:12]})",
        tags={"file_version": str(prompt.version), "sha256": prompt.sha256, "output_schema": prompt.output_schema},
    )


def registry_versions(name: str) -> list[Any]:
    """Every registry version of a prompt, oldest first (empty when it was never registered)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client, found, token = mlflow.MlflowClient(), [], None
    try:
        while True:
            page = client.search_prompt_versions(name, page_token=token)
            found += list(page)
            token = page.token
            if not token:
                break
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return []
        raise
    return sorted(found, key=lambda v: int(v.version))


def set_prompt_alias(name: str, alias: str, file_version: int) -> int:
    """Point `name@alias` at the newest registry version holding file version `file_version`; returns that
    registry version. Runs whose config names `name@alias` use it from their next start."""
    import mlflow

    matching = [v for v in registry_versions(name) if v.tags.get("file_version") == str(file_version)]
    if not matching:
        known = sorted({v.tags.get("file_version", "?") for v in registry_versions(name)})
        raise PromptError(f"prompt {name}: no registered v{file_version} (registered: {known or 'none'}); run "
                              "`reasonloop prompt register` after adding the version to configs/prompts")
    version = int(matching[-1].version)
    mlflow.genai.set_prompt_alias(name, alias, version)
    return version


def prompt_from_registry(name: str, alias: str) -> PromptTemplate:
    """The template `name@alias` points at, rebuilt from the registry and checked against its recorded hash."""
    import mlflow

    try:
        version = mlflow.genai.load_prompt(f"prompts:/{name}@{alias}")
    except Exception as exc:  # noqa: BLE001 - unknown prompt or alias
        raise PromptError(f"prompt {name}@{alias} is not in the MLflow prompt registry ({redact(str(exc))}); "
                          f"set it with `reasonloop prompt alias {name} {alias} VERSION`") from None
    messages = {m["role"]: m["content"] for m in version.template}
    system, template = messages.get("system", ""), messages.get("user", "")
    prompt = PromptTemplate(name=name, version=int(version.tags["file_version"]),
                            description=f"registry version {version.version}, alias {alias}",
                            input_variables=sorted(set(PLACEHOLDER.findall(system + template))),
                            output_schema=version.tags.get("output_schema", ""), system=system, template=template)
    if prompt.sha256 != version.tags.get("sha256"):
        raise PromptError(f"prompt {name}@{alias}: registry version {version.version} does not match its "
                              "recorded sha256; register the file again")
    return prompt
