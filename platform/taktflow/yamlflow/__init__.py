"""YAML workflows: a readable language for process engineers, compiled to BPMN 2.0.

`COMPILERS` plugs the compiler into the engine's deploy path: a .yaml file deploys exactly
like the .bpmn (and .dmn) files it compiles to. See docs/yaml-workflows.md.
"""

from __future__ import annotations

from taktflow.engine.definitions import BPMN, CONNECTOR, DMN, FORM, Compiler, SourceFile
from taktflow.yamlflow.compiler import Compiled, compile_text
from taktflow.yamlflow.language import json_schema


def compile_source(file: SourceFile) -> list[SourceFile]:
    """A YAML workflow file as the BPMN (and DMN) source files it compiles to.

    The compiled files keep the YAML file's name, so that every later problem (for example an
    unknown action, found when the BPMN is parsed) is reported against the YAML file, at the
    line of the step that produced the element.
    """
    from taktflow.forms.definition import is_form_text  # forms read YAML with this package

    if is_form_text(file.text):
        # A form definition (`form:` first) travels with the workflows it serves.
        return [SourceFile(file.name, file.text, FORM)]
    if is_form_text(file.text, key="connector"):
        return [SourceFile(file.name, file.text, CONNECTOR)]
    compiled = compile_text(file.name, file.text)
    positions = {element: pos.line for element, pos in compiled.positions.items()}
    files = [
        SourceFile(
            file.name,
            compiled.bpmn,
            BPMN,
            origin=file.name,
            origin_text=file.text,
            positions=positions,
        )
    ]
    for decision_id, xml in sorted(compiled.dmn.items()):
        files.append(
            SourceFile(
                f"{file.name}#{decision_id}.dmn",
                xml,
                DMN,
                origin=file.name,
                origin_text=file.text,
                positions=positions,
            )
        )
    return files


COMPILERS: dict[str, Compiler] = {".yaml": compile_source, ".yml": compile_source}

__all__ = ["COMPILERS", "Compiled", "compile_source", "compile_text", "json_schema"]
